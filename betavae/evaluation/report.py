"""``report``: one table across runs (datasets × models × β) as Markdown and CSV, with charts.

Each run contributes the records ``evaluate`` wrote into its ``evaluation/`` folder; a run that was
never evaluated contributes the last validation scores of its training log (``metrics.csv``, with the
data and β read from its ``config.yaml``, FID's sample count from ``fid.jsonl`` and the disentanglement
metrics' preset and DCI estimator from ``disentanglement.jsonl``). Every row names its run and model. The charts
(``betavae.evaluation.charts``): a bar chart per reconstruction metric, each disentanglement metric
against β, and the reconstruction–disentanglement trade-off (PSNR against MIG); with ``wandb`` the
table and the charts also go to a W&B run of their own.
"""

from __future__ import annotations

import csv
import json
import sys
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from betavae.beta_rule import model_beta
from betavae.disentanglement import ALL_KEYS
from betavae.errors import MissingFileError
from betavae.evaluation.charts import write_charts
from betavae.evaluation.over_seeds import with_seeds, write_seed_tables
from betavae.evaluation.run_config import KEY as RUN_CONFIG
from betavae.evaluation.run_config import RunConfig
from betavae.evaluation.tables import as_float, dci_estimator_of, markdown, markdown_table, run_label, table_cells
from betavae.run_labels import dataset_label
from betavae.wandb_keys import val_key

#: CSV columns: the run and model first, the scores, what they rest on, the run's folder and source file
CSV_FIELDS = (
    "run",
    "model",
    "dataset",
    "beta",
    "kld_weight",
    "seed",
    "ssim",
    "psnr",
    "ssim_input",
    "psnr_input",
    "fid",
    "kid",
    *ALL_KEYS,
    "n",
    "evaluated_on",
    "fid_num_samples",
    "fid_num_real",
    "fid_reference",
    "disentanglement_preset",
    "dci_estimator",
    "disentanglement_seed",
    "disentanglement_basis",
    "latent_dim",
    "epoch",
    "run_dir",
    "source",
)
_float = as_float


def read_record(path: Path) -> tuple[dict[str, Any] | None, str | None]:
    """The JSON record in ``path``, or ``(None, why)`` when it is empty, truncated or not a JSON object."""
    try:
        text = path.read_text()
    except (OSError, UnicodeDecodeError) as err:
        return None, f"unreadable ({type(err).__name__}: {err})"
    if not text.strip():
        return None, "empty (0 bytes of JSON): an evaluation that was interrupted"
    try:
        record = json.loads(text)
    except json.JSONDecodeError as err:
        return None, f"truncated or not JSON ({err.msg} at line {err.lineno}, column {err.colno})"
    if not isinstance(record, dict):
        return None, f"a JSON {type(record).__name__}, not an evaluation record"
    return record, None


def _evaluation_records(run: Path, problems: list[str] | None = None) -> list[dict[str, Any]]:
    records = []
    for path in sorted(run.glob("**/evaluation/*.json")):
        record, why = read_record(path)
        if record is None:
            if problems is not None:
                problems.append(f"skipped {path}: {why}")
            continue
        if "ssim" in record and "psnr" in record:  # skip traversal records
            record.update(run=str(path.parent.parent), source=str(path))
            records.append(record)
    return records


def _json_lines(path: Path) -> list[dict[str, Any]]:
    """The JSON objects of a ``.jsonl`` log, one per line; a line cut short by a kill is left out."""
    lines = []
    for line in path.read_text().splitlines():
        try:
            lines.append(json.loads(line)) if line.strip() else None
        except json.JSONDecodeError:
            continue
    return [line for line in lines if isinstance(line, dict)]


def _log_record(config_path: Path) -> dict[str, Any] | None:
    """The last validation scores of a run's ``metrics.csv`` next to ``config_path``: SSIM and PSNR (and
    the corrupted input's, for denoisers) of the last epoch that has them, the last FID; a run with FID
    only (a GAN) gives its last FID."""
    run = config_path.parent
    metrics = run / "metrics.csv"
    if not metrics.is_file():
        return None
    config = RunConfig.read(run)  # the one read of this run's config.yaml: the record carries it downhill
    (data_class, data_args), (model_class, model_args) = config.section("data"), config.section("model")
    with metrics.open() as f:
        rows = list(csv.DictReader(f))
    scored = [r for r in rows if r.get(val_key("psnr")) or r.get(val_key("ssim"))]
    fids = [r for r in rows if r.get(val_key("fid"))]
    metrics = [r for r in rows if any(r.get(val_key(key)) for key in ALL_KEYS)]
    if not scored and not fids:
        return None
    last = scored[-1] if scored else fids[-1]
    record: dict[str, Any] = {
        "dataset": dataset_label(data_class or "unknown", data_args.get("root"), data_args.get("name")),
        "beta": model_beta(model_class, model_args),
        "kld_weight": _float(model_args.get("kld_weight")),
        "model": model_class.rsplit(".", 1)[-1] or None,
        "latent_dim": model_args.get("latent_dim"),
        "ssim": _float(last.get(val_key("ssim"))),
        "psnr": _float(last.get(val_key("psnr"))),
        "ssim_input": _float(last.get(val_key("ssim_input"))),
        "psnr_input": _float(last.get(val_key("psnr_input"))),
        "fid": _float(fids[-1][val_key("fid")]) if fids else None,
        "kid": _float(fids[-1].get(val_key("kid"))) if fids else None,
        **{key: _float(metrics[-1].get(val_key(key))) if metrics else None for key in ALL_KEYS},
        "n": None,
        "epoch": int(float(last["epoch"])) if last.get("epoch") else None,
        "run": str(run),
        "source": str(metrics),
        RUN_CONFIG: config,
    }
    record["evaluated_on"] = f"validation, training log (epoch {record['epoch']})"
    fid_log = run / "fid.jsonl"
    if fids and fid_log.is_file():
        lines = _json_lines(fid_log)
        if lines:
            record.update(
                fid_num_samples=lines[-1].get("num_samples"),
                fid_num_real=lines[-1].get("num_real"),
                fid_reference=lines[-1].get("reference"),
            )
    log = run / "disentanglement.jsonl"
    if metrics and log.is_file():
        lines = _json_lines(log)
        if lines:
            record.update(
                disentanglement_preset=lines[-1].get("preset"),
                dci_estimator=lines[-1].get("dci_estimator"),
                disentanglement_seed=lines[-1].get("seed"),
                disentanglement_basis=lines[-1].get("basis"),
            )
    return record


def collect(run_dirs: Iterable[str | Path], problems: list[str] | None = None) -> list[dict[str, Any]]:
    """Every result under ``run_dirs`` (run folders, or experiment folders holding ``version_*``).

    One bad file never sinks the report: an evaluation record that is empty, truncated or not JSON is skipped
    and named in ``problems``, with why; when its run's row comes from the training log instead, that row's
    ``evaluated_on`` says so.

    Raises:
        FileNotFoundError: a folder does not exist, or nothing under it has scores.
    """
    records: list[dict[str, Any]] = []
    problems = [] if problems is None else problems
    for run_dir in run_dirs:
        run = Path(run_dir).expanduser()
        if not run.is_dir():
            raise MissingFileError(f"run folder {run} does not exist")
        before = len(problems)
        found = _evaluation_records(run, problems)
        bad_records = [p.split(": ", 1)[0].removeprefix("skipped ") for p in problems[before:]]
        evaluated = {Path(r["run"]).resolve() for r in found}
        for config_path in sorted(run.glob("**/config.yaml")):
            if config_path.parent.resolve() not in evaluated and (record := _log_record(config_path)):
                unreadable = [b for b in bad_records if Path(b).resolve().parent.parent == config_path.parent.resolve()]
                if unreadable:
                    record["evaluated_on"] += f"; {', '.join(Path(b).name for b in unreadable)} unreadable"
                    problems.append(f"{config_path.parent}: its row comes from the training log instead")
                found.append(record)
        if not found:
            raise MissingFileError(
                f"no scores under {run}: run `python -m betavae evaluate --ckpt_path {run}/…/checkpoints/last.ckpt` "
                "first, or train with the ReconstructionMetrics callback (metrics.csv with val/psnr)"
            )
        records.extend(found)
    return sorted(records, key=lambda r: (str(r.get("dataset")), _float(r.get("beta")) or 0.0, str(r.get("run"))))


def series_labels(records: Sequence[Mapping[str, Any]]) -> list[str]:
    """A bar label per record: ``β=10`` (``BetaVAE β=10`` when the records hold several models), made
    unique with the evaluation set, then the run and checkpoint."""
    several = len({str(r.get("model")) for r in records}) > 1
    labels = []
    for r in records:
        beta = _float(r.get("beta"))
        label = f"β={beta:g}" if beta is not None else str(r.get("model") or "β=?")
        if several and beta is not None and r.get("model"):
            label = f"{r['model']} {label}"
        if r.get("evaluated_on") and not str(r["evaluated_on"]).startswith("validation"):
            label += f" ({r['evaluated_on']})"
        labels.append(label)
    keys = [(str(r.get("dataset")), label) for r, label in zip(records, labels, strict=True)]
    return [
        f"{label} · {run_label(r)}" if keys.count(key) > 1 else label
        for r, label, key in zip(records, labels, keys, strict=True)
    ]


def study_tables(records: Sequence[Mapping[str, Any]]) -> str:
    """The study's three tables as Markdown: SSIM and PSNR per dataset and β (models that reconstruct); FID
    per dataset and β (with the sample count and reference it rests on; a GAN's row is named by its model in
    the β column); and, for datasets trained with more than one ``kld_weight`` at the same β (the study's
    batik runs), the kld_weight table."""
    cells = [{**table_cells(r), "kld": _fmt_kld(r.get("kld_weight"))} for r in records]
    reconstructing = [c for c, r in zip(cells, records, strict=True) if _float(r.get("ssim")) is not None]
    parts = [
        "## Reconstruction: SSIM and PSNR by dataset and β\n",
        markdown(
            ["dataset", "β", "kld_weight", "SSIM", "PSNR (dB)", "n", "evaluated on"],
            [
                [c["dataset"], c["beta"], c["kld"], c["ssim"], c["psnr"], c["n"], c["evaluated_on"]]
                for c in reconstructing
            ],
        ),
        "\n\n## Samples: FID by dataset and β\n",
        markdown(
            ["dataset", "β", "kld_weight", "FID", "KID", "FID samples / reference", "feature network"],
            [
                [
                    c["dataset"],
                    c["beta"] if r.get("beta") is not None else c["model"],  # a GAN: its model
                    c["kld"],
                    c["fid"],
                    _fmt_float(r.get("kid"), 4),
                    c["fid_basis"],
                    r.get("fid_feature_extractor") or "—",
                ]
                for c, r in zip(cells, records, strict=True)
            ],
        ),
    ]
    groups: dict[tuple[str, str], set[str]] = {}
    for c in cells:
        groups.setdefault((c["dataset"], c["beta"]), set()).add(c["kld"])
    varied = [(c, r) for c, r in zip(cells, records, strict=True) if len(groups[(c["dataset"], c["beta"])]) > 1]
    parts.append("\n\n## kld_weight: the same dataset and β with different KL weights\n")
    if varied:
        parts.append(
            markdown(
                ["dataset", "β", "kld_weight", "β·kld_weight", "SSIM", "PSNR (dB)", "FID"],
                [
                    [c["dataset"], c["beta"], c["kld"], _fmt_kld(_product(r)), c["ssim"], c["psnr"], c["fid"]]
                    for c, r in sorted(
                        varied,
                        key=lambda cr: (cr[0]["dataset"], cr[0]["beta"], -(_float(cr[1].get("kld_weight")) or 0)),
                    )
                ],
            )
        )
    else:
        parts.append("No dataset was trained with more than one kld_weight at the same β.")
    return "".join(parts) + "\n"


def _product(record: Mapping[str, Any]) -> float | None:
    beta, kld = _float(record.get("beta")), _float(record.get("kld_weight"))
    return beta * kld if beta is not None and kld is not None else None


def _fmt_kld(value: Any) -> str:
    value = _float(value)
    return "—" if value is None else f"{value:g}"


def _fmt_float(value: Any, digits: int) -> str:
    value = _float(value)
    return "—" if value is None else f"{value:.{digits}f}"


def csv_rows(records: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """The CSV rows of ``records``: ``run`` as ``experiment/version_N · checkpoint``, its folder in
    ``run_dir``, the disentanglement preset by name, and DCI's estimator where there is a DCI number
    (``dci_estimator_of``: ``gbt`` for records older than the choice)."""
    rows = []
    for r in records:
        preset = r.get("disentanglement_preset")
        rows.append(
            {
                **r,
                "run": run_label(r),
                "run_dir": r.get("run"),
                "disentanglement_preset": preset.get("name") if isinstance(preset, Mapping) else preset,
                "dci_estimator": dci_estimator_of(r) if _float(r.get("dci_disentanglement")) is not None else None,
            }
        )
    return rows


def write_report(records: Sequence[Mapping[str, Any]], output_dir: str | Path) -> dict[str, Path]:
    """``results.md``, ``results.csv``, ``study_tables.md`` (the study's three tables, see ``study_tables``),
    ``seeds.md`` and ``seeds.csv`` (runs that differ only in seed as one row, ``betavae.evaluation.over_seeds``)
    and the charts of ``betavae.evaluation.charts.write_charts`` in ``output_dir``."""
    records = with_seeds(records)  # each run's config.yaml, read once (unless a record carries it), and its seed
    out = Path(output_dir).expanduser()
    out.mkdir(parents=True, exist_ok=True)
    files = {"markdown": out / "results.md", "csv": out / "results.csv", "study_tables": out / "study_tables.md"}
    files["markdown"].write_text(markdown_table(records) + "\n")
    files["study_tables"].write_text(study_tables(records))
    with files["csv"].open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=CSV_FIELDS, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(csv_rows(records))
    files.update(write_seed_tables(records, out))
    files.update(write_charts(records, series_labels(records), out))
    return files


def report(
    run_dirs: Sequence[str | Path],
    output_dir: str | Path = "report",
    wandb: bool = False,
    wandb_project: str = "betavae",
) -> dict[str, Path]:
    """Collect the results of ``run_dirs``, write the report to ``output_dir`` and print the table; with
    ``wandb``, also log the table and the charts to a W&B run of their own (``log_report``)."""
    problems: list[str] = []
    records = collect(run_dirs, problems)
    files = write_report(records, output_dir)
    if problems:  # named in the report itself, and on stderr
        notes = "\n".join(f"- {p}" for p in problems)
        with files["markdown"].open("a") as f:
            f.write(f"\n## Files skipped\n\n{notes}\n")
        print(f"report: {len(problems)} note(s):\n{notes}", file=sys.stderr)
    print(markdown_table(records))
    print("\n" + "\n".join(f"{kind}: {path}" for kind, path in files.items()))
    if wandb:
        from betavae.evaluation.charts import log_report

        print(f"W&B: {log_report(records, csv_rows(records), files, CSV_FIELDS, wandb_project, output_dir)}")
    return files

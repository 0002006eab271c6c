"""``report``'s charts, and its W&B run: what to draw from the records (``betavae.plotting`` draws it).

- ``<metric>.png`` for SSIM, PSNR and FID: bars by dataset, one per run (``β=10``, ...);
- ``<metric>_vs_beta.png`` for each disentanglement metric: the metric against β, one line per model
  and dataset through the median over seeds with [min, max] error bars; settings without β (comparison
  models at their weights) as a dashed median over a [min, max] band;
- ``tradeoff_psnr_mig.png``: the reconstruction–disentanglement trade-off, PSNR against MIG, one point
  per run labelled with its model and β, coloured by dataset.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from betavae.evaluation.over_seeds import aggregate
from betavae.evaluation.tables import DISENTANGLEMENT_COLUMNS, as_float
from betavae.plotting import bar_chart, labelled_scatter, median_chart
from betavae.wandb_keys import SCORES, TRADEOFF, report_key

#: (key, label) of the bar charts: the reconstruction and sample scores of ``betavae.wandb_keys.SCORES``
BAR_METRICS = tuple((key, {k: label for k, label, _ in SCORES}[key]) for key in ("ssim", "psnr", "fid"))


def bar_charts(records: Sequence[Mapping[str, Any]], labels: Sequence[str], out: Path) -> dict[str, Path]:
    """A grouped bar chart per reconstruction metric with values: a group per dataset, a bar per label."""
    datasets = list(dict.fromkeys(str(r.get("dataset")) for r in records))
    files = {}
    for key, name in BAR_METRICS:
        if all(as_float(r.get(key)) is None for r in records):
            continue
        series: dict[str, list[float | None]] = {}
        for record, label in zip(records, labels, strict=True):
            values = series.setdefault(label, [None] * len(datasets))
            values[datasets.index(str(record.get("dataset")))] = as_float(record.get(key))
        files[key] = bar_chart(datasets, series, out / f"{key}.png", name, title=f"{name} by dataset and β")
    return files


def model_label(record: Mapping[str, Any]) -> str:
    """``BetaVAE β=4`` (or the model alone when it has no β)."""
    beta = as_float(record.get("beta"))
    model = str(record.get("model") or "?")
    return f"{model} β={beta:g}" if beta is not None else model


def beta_charts(records: Sequence[Mapping[str, Any]], out: Path) -> dict[str, Path]:
    """``<metric>_vs_beta.png`` per disentanglement metric that some run with a β has: one line per
    (model, dataset) through the median over seeds at each β, with [min, max] as error bars where there are
    several seeds (``betavae.evaluation.over_seeds``); each setting without β on the same chart as a dashed
    median with a shaded [min, max] band; β on a log axis when it spans a factor of 10 or more."""
    groups = aggregate(records)
    files = {}
    for name, key in DISENTANGLEMENT_COLUMNS:
        series: dict[str, list[tuple[float, float, float, float]]] = {}
        references: dict[str, tuple[float, float, float]] = {}
        for g in groups:
            stats = g.stats.get(key)
            if stats is None:
                continue
            median, low, high, _ = stats
            if g.beta is not None:
                series.setdefault(f"{g.name} · {g.dataset}", []).append((g.beta, median, low, high))
            else:
                references[f"{g.label} · {g.dataset}"] = (median, low, high)
        if not series:
            continue
        betas = [b for points in series.values() for b, *_ in points]
        log_x = min(betas) > 0 and max(betas) / min(betas) >= 10
        files[f"{key}_vs_beta"] = median_chart(
            series,
            out / f"{key}_vs_beta.png",
            "β",
            f"{name} (median over seeds, [min, max])",
            title=f"{name} against β",
            log_x=log_x,
            references=references,
        )
    return files


def tradeoff_chart(records: Sequence[Mapping[str, Any]], out: Path) -> dict[str, Path]:
    """``tradeoff_psnr_mig.png``: PSNR against MIG, a point per run with both, labelled ``model β``."""
    x_key, y_key = TRADEOFF  # the dashboard's PSNR-against-MIG panel, the same keys
    points = [
        (as_float(r.get(x_key)), as_float(r.get(y_key)), model_label(r), str(r.get("dataset")))
        for r in records
        if as_float(r.get(x_key)) is not None and as_float(r.get(y_key)) is not None
    ]
    if not points:
        return {}
    path = labelled_scatter(
        points,
        out / "tradeoff_psnr_mig.png",
        "MIG (disentanglement)",
        "PSNR (dB, reconstruction)",
        title="Reconstruction against disentanglement",
    )
    return {"tradeoff": path}


def write_charts(records: Sequence[Mapping[str, Any]], labels: Sequence[str], out: Path) -> dict[str, Path]:
    """Every chart of the module docstring that the records have values for; {name: path}."""
    return {**bar_charts(records, labels, out), **beta_charts(records, out), **tradeoff_chart(records, out)}


def log_report(
    records: Sequence[Mapping[str, Any]],
    rows: Sequence[Mapping[str, Any]],
    files: Mapping[str, Path],
    columns: Sequence[str],
    project: str,
    output_dir: str | Path,
) -> str:
    """Log the report to a W&B run of its own (job type ``report``): the table (``report/results``, the CSV's
    columns) and every chart PNG (``report/<name>``). Online or offline as W&B is set up (``WANDB_MODE``).
    Returns the run's folder, the place to ``wandb sync`` from when offline."""
    import wandb

    run = wandb.init(
        project=project,
        job_type="report",
        name=f"report {Path(output_dir).expanduser().resolve().name}",
        dir=str(Path(output_dir).expanduser()),
        config={"runs": sorted({str(r.get("run")) for r in records})},
        reinit="finish_previous",
    )
    try:
        table = wandb.Table(columns=list(columns), data=[[_cell(row.get(c)) for c in columns] for row in rows])
        images = {
            report_key(name): wandb.Image(str(path)) for name, path in files.items() if str(path).endswith(".png")
        }
        run.log({report_key("results"): table, **images})
        return str(Path(run.dir).parent)
    finally:
        run.finish()
        wandb.teardown()  # waits for W&B's service to write the run's file: `report` is done with W&B


def _cell(value: Any) -> Any:
    """A W&B table cell: numbers and text as they are, anything else (presets, lists) as text."""
    if value is None or isinstance(value, (int, float, str)):
        return value
    return str(value)

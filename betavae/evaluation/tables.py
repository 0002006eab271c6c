"""The tables of ``evaluate`` and ``report``: one Markdown builder, the study's columns, the metric columns.

A row names its run (``experiment/version_N``, and the checkpoint ``evaluate`` scored) and its model, so
two runs of different models on one dataset are never two indistinguishable rows. The disentanglement
columns (MIG, SAP, DCI, FactorVAE and BetaVAE scores, Modularity, Explicitness) appear when a row has
one of them: data with factors, attributes or class labels; and a "DCI estimator" column when a row's DCI
numbers come from another classifier than disentanglement_lib's gradient-boosted trees.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

# (header, key): the study's table (dataset, β, SSIM, PSNR dB, FID), with the model in front
STUDY_COLUMNS: tuple[tuple[str, str], ...] = (
    ("dataset", "dataset"),
    ("model", "model"),
    ("β", "beta"),
    ("SSIM", "ssim"),
    ("PSNR (dB)", "psnr"),
    ("FID", "fid"),
)
#: (header, key) of the disentanglement metrics, in ``betavae.disentanglement.ALL_KEYS``' terms
DISENTANGLEMENT_COLUMNS: tuple[tuple[str, str], ...] = (
    ("MIG", "mig"),
    ("SAP", "sap"),
    ("DCI D", "dci_disentanglement"),
    ("DCI C", "dci_completeness"),
    ("DCI I", "dci_informativeness"),
    ("FactorVAE", "factorvae_score"),
    ("BetaVAE", "betavae_score"),
    ("Modularity", "modularity"),
    ("Explicitness", "explicitness"),
)
#: (header, key) added when some row's DCI numbers are not gradient-boosted trees' (``dci_estimator_of``)
DCI_ESTIMATOR_COLUMN: tuple[str, str] = ("DCI estimator", "dci_estimator")
#: (header, key) added when a row corrupts its input (denoising, super-resolution): the input's own scores
INPUT_COLUMNS: tuple[tuple[str, str], ...] = (("SSIM of input", "ssim_input"), ("PSNR of input (dB)", "psnr_input"))
# what every number rests on, and where it comes from
BASIS_COLUMNS: tuple[tuple[str, str], ...] = (
    ("n", "n"),
    ("evaluated on", "evaluated_on"),
    ("FID samples / reference", "fid_basis"),
    ("run", "run_label"),
)


def markdown(headers: Sequence[str], rows: Iterable[Sequence[Any]]) -> str:
    """A Markdown table: a header row, the separator, one line per row (``|`` inside a cell becomes ``/``)."""
    lines = ["| " + " | ".join(headers) + " |", "|" + "|".join("---" for _ in headers) + "|"]
    lines += ["| " + " | ".join(str(c).replace("|", "/") for c in row) + " |" for row in rows]
    return "\n".join(lines)


def as_float(value: Any) -> float | None:
    """``value`` as a float, or ``None`` when it is missing or not a number (CSV cells, YAML values)."""
    try:
        return float(value) if value not in (None, "") else None
    except (TypeError, ValueError):
        return None


def fmt(value: Any, digits: int) -> str:
    """A cell: ``—`` for a missing value, floats with ``digits`` decimals, anything else as text."""
    if value is None or value == "":
        return "—"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


def run_label(record: Mapping[str, Any]) -> str:
    """``experiment/version_N`` of a record's ``run`` folder, plus ``· checkpoint`` when ``evaluate`` scored one
    (``quickstart/version_0 · last``); ``—`` when the record has no run."""
    if not record.get("run"):
        return "—"
    run = Path(str(record["run"]))
    label = f"{run.parent.name}/{run.name}" if run.parent.name else run.name
    return label + (f" · {Path(str(record['checkpoint'])).stem}" if record.get("checkpoint") else "")


def dci_estimator_of(record: Mapping[str, Any]) -> str:
    """The classifier of a record's DCI numbers: its ``dci_estimator``, or ``"gbt"`` for records written before
    there was a choice (gradient-boosted trees were the only estimator)."""
    return str(record.get("dci_estimator") or "gbt")


def has_disentanglement(results: Iterable[Mapping[str, Any]]) -> bool:
    """Whether any result has a disentanglement metric (then tables show their columns)."""
    return any(as_float(r.get(key)) is not None for r in results for _, key in DISENTANGLEMENT_COLUMNS)


def table_cells(result: Mapping[str, Any]) -> dict[str, str]:
    """One result's cells, formatted: SSIM and the disentanglement metrics with 3 decimals, PSNR and FID 2."""
    beta = result.get("beta")
    basis = (
        f"{result['fid_num_samples']} / {result.get('fid_reference') or '?'} (n={result.get('fid_num_real')})"
        if result.get("fid_num_samples")
        else "—"
    )
    cells = {
        "dataset": fmt(result.get("dataset"), 0),
        "model": fmt(result.get("model"), 0),
        "beta": f"{beta:g}" if isinstance(beta, (int, float)) else fmt(beta, 0),
        "ssim": fmt(result.get("ssim"), 3),
        "psnr": fmt(result.get("psnr"), 2),
        "fid": fmt(result.get("fid"), 2),
        "n": fmt(result.get("n"), 0),
        "evaluated_on": fmt(result.get("evaluated_on"), 0),
        "fid_basis": basis,
        "run_label": run_label(result),
        "ssim_input": fmt(as_float(result.get("ssim_input")), 3),
        "psnr_input": fmt(as_float(result.get("psnr_input")), 2),
    }
    cells.update({key: fmt(as_float(result.get(key)), 3) for _, key in DISENTANGLEMENT_COLUMNS})
    cells["dci_estimator"] = (
        dci_estimator_of(result) if as_float(result.get("dci_disentanglement")) is not None else "—"
    )
    return cells


def result_columns(results: Sequence[Mapping[str, Any]]) -> tuple[tuple[str, str], ...]:
    """The columns of a results table: the study's, the corrupted input's SSIM and PSNR when any result has
    them, the disentanglement metrics when any result has one (and DCI's estimator when some DCI number is
    not gradient-boosted trees'), then n, what was evaluated, FID's basis and the run."""
    inputs = INPUT_COLUMNS if any(as_float(r.get("psnr_input")) is not None for r in results) else ()
    metrics = DISENTANGLEMENT_COLUMNS if has_disentanglement(results) else ()
    if any(table_cells(r)["dci_estimator"] not in ("gbt", "—") for r in results):
        metrics = (*metrics, DCI_ESTIMATOR_COLUMN)
    return (*STUDY_COLUMNS, *inputs, *metrics, *BASIS_COLUMNS)


def markdown_table(results: Sequence[Mapping[str, Any]]) -> str:
    """The results table: dataset, model, β, SSIM, PSNR dB, FID, [the input's SSIM and PSNR], [the
    disentanglement metrics, [DCI's estimator]], n, what was evaluated, what FID rests on, and the run."""
    columns = result_columns(results)
    rows = [[table_cells(r)[key] for _, key in columns] for r in results]
    return markdown([header for header, _ in columns], rows)

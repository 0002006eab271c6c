"""``report``'s seed aggregation: runs that differ only in their seed become one row, median [min, max].

Locatello et al. 2019 (*Challenging Common Assumptions in the Unsupervised Learning of Disentangled
Representations*, ICML, Sections 5.2–5.4) found that the random seed moves every disentanglement metric about
as much as the choice of objective and its weight, so a model is reported over several seeds (their figures:
the spread over 50 seeds per setting). Here a *setting* is everything a run was trained with except its seed,
read from the run's ``config.yaml`` (as LightningCLI wrote it): the model's class and arguments, the data's
class and arguments, the training length (``max_epochs``, ``max_steps``, ``limit_train_batches``), and what
was evaluated (the evaluation set, the checkpoint, the disentanglement preset, DCI's estimator: numbers of
different estimators are never one row, and a row of another estimator than gradient-boosted trees says so
in its name). Its ``seed_everything`` is the seed. A record whose run has no ``config.yaml`` is a setting of
its own (its seed is unknown).

Each setting's row gives, for every metric, the **median [min, max] over its seeds** (with a handful of seeds
per setting, the range says more than an interquartile range of 3 points); a metric missing for some seeds
says over how many it was taken. When one seed was scored more than once (a rerun under the same name, a
checkpoint evaluated twice) only the newest record counts, and the others are listed as not counted.
"""

from __future__ import annotations

import csv
import importlib
import inspect
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from betavae.beta_rule import model_beta
from betavae.evaluation.run_config import KEY, attach, run_config
from betavae.evaluation.tables import DISENTANGLEMENT_COLUMNS, as_float, dci_estimator_of, markdown, run_label
from betavae.run_labels import run_keys, short_name

#: (header, key) of every metric aggregated over seeds: the disentanglement metrics, then PSNR, SSIM, FID
SEED_METRICS: tuple[tuple[str, str], ...] = (
    *DISENTANGLEMENT_COLUMNS,
    ("PSNR (dB)", "psnr"),
    ("SSIM", "ssim"),
    ("FID", "fid"),
)
#: the model arguments a row label shows when they differ between settings of one model on one dataset
LABEL_KEYS = ("loss_type", "dip_type", "kld_weight", "alpha", "gamma", "max_capacity", "lambda_od", "lambda_d")
#: the LABEL_KEYS that name a loss's kind rather than a weight (named even at their class default)
KIND_KEYS = ("loss_type", "dip_type")
#: the trainer settings that make two runs different settings (training length)
TRAINING_KEYS = ("max_epochs", "max_steps", "limit_train_batches")


@dataclass
class SeedGroup:
    """The runs of one setting: its label, β (``None`` for models without one), DCI's estimator, seeds and
    per-metric stats.

    ``stats[key]`` is ``(median, min, max, n)`` over the seeds that have the metric (``None`` when none has).
    """

    dataset: str
    model: str
    beta: float | None
    args: dict[str, Any]
    dci_estimator: str = "gbt"
    defaults: dict[str, Any] = field(default_factory=dict)  # the model class's own argument defaults
    records: list[dict[str, Any]] = field(default_factory=list)
    skipped: list[dict[str, Any]] = field(default_factory=list)
    name: str = ""
    stats: dict[str, tuple[float, float, float, int] | None] = field(default_factory=dict)

    @property
    def seeds(self) -> list[int | None]:
        return [r.get("seed") for r in self.records]

    @property
    def label(self) -> str:
        """``BetaVAE β=4`` or the name alone for a model without β."""
        return f"{self.name} β={self.beta:g}" if self.beta is not None else self.name


def with_seeds(records: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Copies of ``records`` carrying their run's ``RunConfig`` (``run_config.attach``: read once, not again
    for records that carry one) and ``seed``: its ``seed_everything`` (``None`` when the run has no config or
    trained unseeded)."""
    out = []
    for r in records:
        r = attach(r)
        out.append({**r, "seed": r[KEY].seed})
    return out


def class_defaults(class_path: str) -> dict[str, Any]:
    """The defaults of the constructor arguments of the class at ``class_path`` (``{}`` if it cannot be imported)."""
    module, _, name = class_path.rpartition(".")
    try:
        parameters = inspect.signature(getattr(importlib.import_module(module), name)).parameters
    except (ImportError, AttributeError, ValueError, TypeError):
        return {}
    return {
        k: p.default
        for k, p in parameters.items()
        if p.default is not inspect.Parameter.empty and p.kind is not p.VAR_KEYWORD
    }


def with_defaults(value: Any) -> Any:
    """``value`` with every ``{class_path, init_args}`` in it completed by the class's own defaults, so that a
    config that wrote only what it changed (an older run's) and one that wrote everything (jsonargparse's) name
    the same setting (numbers compare as floats). A class that cannot be imported is left as written."""
    if isinstance(value, Mapping):
        done = {k: with_defaults(v) for k, v in value.items()}
        if isinstance(done.get("class_path"), str) and isinstance(done.get("init_args", {}), Mapping):
            defaults = class_defaults(done["class_path"])
            if defaults:
                done["init_args"] = {**with_defaults(defaults), **dict(done.get("init_args") or {})}
        return done
    if isinstance(value, (list, tuple)):
        return [with_defaults(v) for v in value]
    if isinstance(value, int) and not isinstance(value, bool):
        return float(value)  # a default of 0 and a written 0.0 are one setting
    return value


def _setting(record: Mapping[str, Any], index: int) -> tuple[str, dict[str, Any], str]:
    """(setting key, model arguments, dataset) of the ``index``-th record: from its run's config, else the
    record alone (a key of its own)."""
    preset = record.get("disentanglement_preset")
    preset = preset.get("name") if isinstance(preset, Mapping) else preset
    checkpoint = Path(str(record["checkpoint"])).stem if record.get("checkpoint") else None
    evaluation = [record.get("evaluated_on"), checkpoint, preset, dci_estimator_of(record)]
    config = run_config(record).config
    if config is None:  # unknown seed: never merged with another run
        args = {"beta": as_float(record.get("beta")), "kld_weight": as_float(record.get("kld_weight"))}
        key = json.dumps(["without config.yaml", index])
        return key, args, str(record.get("dataset"))
    model, data = config.get("model") or {}, config.get("data") or {}
    model_args, data_args = dict(model.get("init_args") or {}), dict(data.get("init_args") or {})
    trainer = config.get("trainer") or {}
    identity = {
        "model": with_defaults({"class_path": model.get("class_path"), "init_args": model_args}),
        "data": [data.get("class_path"), data_args],
        "training": {k: trainer.get(k) for k in TRAINING_KEYS},
        "evaluation": evaluation,
    }
    keys = run_keys(str(model.get("class_path", "")), model_args, str(data.get("class_path", "")), data_args)
    return json.dumps(identity, sort_keys=True, default=str), model_args, str(keys["dataset"])


def _stats(values: Sequence[float | None]) -> tuple[float, float, float, int] | None:
    found = np.array([v for v in values if v is not None], dtype=float)
    if found.size == 0:
        return None
    return float(np.median(found)), float(found.min()), float(found.max()), int(found.size)


def aggregate(records: Sequence[Mapping[str, Any]]) -> list[SeedGroup]:
    """One ``SeedGroup`` per setting of ``records`` (see the module docstring), sorted by dataset, model and
    β; each named by its model and the ``LABEL_KEYS`` that differ from the model's other settings on the
    same dataset, and ``(DCI: random_forest)`` where DCI's estimator is not gradient-boosted trees."""
    groups: dict[str, SeedGroup] = {}
    for index, r in enumerate(with_seeds(records)):
        key, args, dataset = _setting(r, index)
        model = str(r.get("model") or short_name(run_config(r).section("model")[0] or "?"))
        beta = model_beta(model, args)
        if key not in groups:
            defaults = class_defaults(str(run_config(r).section("model")[0] or ""))
            groups[key] = SeedGroup(dataset, model, beta, args, dci_estimator_of(r), defaults)
        group = groups[key]
        group.records.append(r)
    for group in groups.values():
        newest: dict[Any, dict[str, Any]] = {}
        order = sorted(group.records, key=lambda r: (str(r.get("created") or ""), str(r.get("run"))))
        for i, r in enumerate(order):  # a seed scored twice: the newest counts; unknown seeds are distinct
            newest[r["seed"] if r["seed"] is not None else ("unknown", i)] = r
        group.skipped = [r for r in order if all(r is not kept for kept in newest.values())]
        group.records = sorted(newest.values(), key=lambda r: (r["seed"] is None, r["seed"] or 0))
        group.stats = {key: _stats([as_float(r.get(key)) for r in group.records]) for _, key in SEED_METRICS}
    result = sorted(groups.values(), key=lambda g: (g.dataset, g.model, g.beta is None, g.beta or 0.0))
    for group in result:
        siblings = [g for g in result if (g.dataset, g.model) == (group.dataset, group.model)]
        varying = [k for k in LABEL_KEYS if len({json.dumps(g.args.get(k), default=str) for g in siblings}) > 1]
        # a weight at its class default says nothing (β-VAE's unused gamma=1000 beside AnnealedVAE's gamma=10);
        # the loss's kind (loss_type, dip_type) is always named where it varies
        varying = [k for k in varying if k in KIND_KEYS or not _is_default(group, k)]
        estimator = [f"(DCI: {group.dci_estimator})"] if group.dci_estimator != "gbt" else []
        group.name = " ".join([group.model, *(f"{k}={_fmt_arg(group.args.get(k))}" for k in varying), *estimator])
    return result


def _is_default(group: SeedGroup, key: str) -> bool:
    return key in group.defaults and with_defaults(group.args.get(key)) == with_defaults(group.defaults[key])


def _fmt_arg(value: Any) -> str:
    return f"{value:g}" if isinstance(value, float) else str(value)


def spread_cell(stats: tuple[float, float, float, int] | None, n_seeds: int, digits: int) -> str:
    """``0.123 [0.100, 0.150]``; ``(n=2)`` appended when fewer seeds than the row's have the metric; ``—``."""
    if stats is None:
        return "—"
    median, low, high, n = stats
    cell = f"{median:.{digits}f}" if n == 1 else f"{median:.{digits}f} [{low:.{digits}f}, {high:.{digits}f}]"
    return cell + (f" (n={n})" if n != n_seeds else "")


def seed_table(groups: Sequence[SeedGroup]) -> str:
    """The Markdown section of ``seeds.md``: a row per setting, each metric median [min, max] over its seeds."""
    metrics = [(h, k) for h, k in SEED_METRICS if any(g.stats.get(k) for g in groups)]
    rows = []
    for g in groups:
        n = len(g.records)
        seeds = ", ".join("?" if s is None else str(s) for s in g.seeds)
        cells = [spread_cell(g.stats.get(k), n, 2 if k in ("psnr", "fid") else 3) for _, k in metrics]
        rows.append([g.dataset, g.name, "—" if g.beta is None else f"{g.beta:g}", n, seeds, *cells])
    headers = ["dataset", "model", "β", "n seeds", "seeds", *(h for h, _ in metrics)]
    parts = [
        "## Over seeds: median [min, max]\n\n"
        "Runs that differ only in `seed_everything` (same model and weights, data, training length and evaluation) "
        "are one row (Locatello et al. 2019: the seed matters as much as the objective). Each cell is the median "
        "over the row's seeds and, with several, [min, max]; `(n=k)` where only k of them have that metric.\n",
        markdown(headers, rows),
    ]
    skipped = [(g, r) for g in groups for r in g.skipped]
    if skipped:
        parts.append("\n\nNot counted (the same seed scored again; the newest counts):\n")
        parts += [f"\n- {g.label}, seed {r.get('seed')}: {run_label(r)}" for g, r in skipped]
    return "".join(parts) + "\n"


def seed_rows(groups: Sequence[SeedGroup]) -> tuple[list[str], list[dict[str, Any]]]:
    """The CSV columns and rows of ``seeds.csv``: the setting (DCI's estimator included), its seeds and runs,
    and per metric ``<key>_median``, ``<key>_min``, ``<key>_max``, ``<key>_n``."""
    columns = ["dataset", "model", "label", "beta", *LABEL_KEYS, "dci_estimator", "n_seeds", "seeds", "runs"]
    columns += [f"{k}_{s}" for _, k in SEED_METRICS for s in ("median", "min", "max", "n")]
    rows = []
    for g in groups:
        row: dict[str, Any] = {
            "dataset": g.dataset,
            "model": g.model,
            "label": g.label,
            "beta": g.beta,
            **{k: g.args.get(k) for k in LABEL_KEYS},
            "dci_estimator": g.dci_estimator,
            "n_seeds": len(g.records),
            "seeds": " ".join("?" if s is None else str(s) for s in g.seeds),
            "runs": " ".join(run_label(r) for r in g.records),
        }
        for _, k in SEED_METRICS:
            stats = g.stats.get(k)
            row.update(zip((f"{k}_median", f"{k}_min", f"{k}_max", f"{k}_n"), stats or (None,) * 4, strict=True))
        rows.append(row)
    return columns, rows


def write_seed_tables(records: Sequence[Mapping[str, Any]], out: Path) -> dict[str, Path]:
    """``seeds.md`` and ``seeds.csv`` in ``out``: the setting rows of ``aggregate(records)``."""
    groups = aggregate(records)
    files = {"seeds": out / "seeds.md", "seeds_csv": out / "seeds.csv"}
    files["seeds"].write_text(seed_table(groups))
    columns, rows = seed_rows(groups)
    with files["seeds_csv"].open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=columns)
        writer.writeheader()
        writer.writerows(rows)
    return files

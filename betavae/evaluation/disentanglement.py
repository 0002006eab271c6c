"""``evaluate``'s disentanglement part: every metric of a checkpoint's codes, with what it rests on.

The same computation as the ``DisentanglementMetrics`` callback (``betavae.scoring.disentanglement``):
on factor data all nine metrics on the factor grid, on attribute or label data the seven sample-based
ones on the validation split; by default at disentanglement_lib's sample sizes (``preset="default"``),
the protocol's numbers. Their cost on 2 CPU cores: DCI's gradient-boosted trees ~350 s of CPU, and on
factor data the BetaVAE and FactorVAE scores render and encode ~2.9 million images (~2.2 ms of CPU each
at 64×64 for the quickstart model: about 2 hours); ``preset="fast"`` renders ~245,000 (568 s of CPU
for the quickstart model). Attribute data needs no rendering: the validation codes, then the metrics.
Those 2.9 million draws hold 722,927 distinct grid images, and each is now rendered and encoded once
(``betavae.disentanglement.grid_codes``; 4x fewer images, the same numbers), DCI's factors fit in
parallel processes, and a rich bar per metric shows the progress (docs/scoring_speed.md).
"""

from __future__ import annotations

import time
from typing import Any

import torch
from lightning.pytorch.utilities import rank_zero_warn

from betavae.disentanglement import ALL_KEYS, DCIEstimator, Preset
from betavae.disentanglement.classifiers import check_dci_estimator
from betavae.disentanglement.progress import RichProgress
from betavae.errors import ConfigError
from betavae.model_api import api_problem, evaluating
from betavae.scoring.codes import ValidationCodes, batch_codes, ground_truth_of
from betavae.scoring.disentanglement import grid_scores, observed_scores, preset_sizes, scored_on_grid

PRESETS = ("default", "fast", "none")


def observed_codes(model: Any, batches: Any, datamodule: Any, max_images: int | None) -> tuple[Any, Any, tuple]:
    """μ (``embed``) and the ground truth of at most ``max_images`` images of ``batches``: (codes, factors,
    names), or ``(None, None, ())`` when there are none."""
    codes = ValidationCodes(max_images)
    device = next(model.parameters()).device
    with evaluating(model):
        for batch in batches:
            on_device = {
                k: v.to(device) if isinstance(v, torch.Tensor) and k in ("image", "label") else v
                for k, v in batch.items()
            }
            codes.add(batch_codes(model, on_device), batch, datamodule)
            if codes.full:
                break
    gathered = codes.gather(None)
    return (*gathered, codes.names) if gathered is not None else (None, None, ())


def score_disentanglement(
    model: Any,
    datamodule: Any,
    batches: Any,
    preset: str | Preset = "default",
    seed: int = 0,
    interventions: bool = True,
    n_jobs: int | None = None,
    dci_estimator: DCIEstimator = "gbt",
) -> dict[str, Any]:
    """The disentanglement fields of ``evaluate``'s JSON.

    Args:
        model: The model, with its checkpoint's weights, on its device.
        datamodule: The run's data module, set up: its factor grid, or its validation split with attributes.
        batches: The validation batches (used on attribute and label data, or for a conditional model).
        preset: ``"default"`` (disentanglement_lib's sizes), ``"fast"``, a ``Preset``, or ``"none"`` (skip them).
        seed: Seed of every draw, split and estimator.
        interventions: On factor data, also the BetaVAE and FactorVAE scores.
        n_jobs: DCI's factors in parallel (joblib); the scores do not depend on it.
        dci_estimator: DCI's classifier: ``"gbt"`` (disentanglement_lib's) or ``"random_forest"``
            (``betavae.disentanglement.dci_classifier``; cheaper, other numbers).

    Returns:
        Every key of ``ALL_KEYS`` (``None`` where not computed) and ``disentanglement_preset`` (name and
        sample sizes), ``dci_estimator`` (the classifier of the ``dci_*`` numbers), ``_seed``, ``_basis`` (what
        the metrics ran on), ``_n`` (images of the sample-based metrics), ``_dropped`` (ground-truth columns
        with a single value), ``_note`` (why there are none).
    """
    if not isinstance(preset, Preset) and preset not in PRESETS:
        raise ConfigError(f"disentanglement_preset must be one of {', '.join(PRESETS)}; got {preset!r}")
    try:
        check_dci_estimator(dci_estimator)
    except ValueError as err:  # a setting of the command: one ConfigError, before any work
        raise ConfigError(str(err)) from None
    out: dict[str, Any] = {key: None for key in ALL_KEYS}
    out.update(
        disentanglement_preset=preset_sizes(preset) if preset != "none" else None,
        dci_estimator=dci_estimator if preset != "none" else None,
        disentanglement_seed=seed,
        disentanglement_basis=None,
        disentanglement_n=None,
        disentanglement_dropped=None,
        disentanglement_note=None,
    )
    kind, _ = ground_truth_of(datamodule)
    problem = api_problem(model, embed=1, normalize=1)
    if preset == "none":
        out["disentanglement_note"] = "not computed (--disentanglement_preset none)"
    elif kind is None:
        out["disentanglement_note"] = f"{type(datamodule).__name__} has no factors, attributes or class labels"
    elif problem:
        out["disentanglement_note"] = problem
    if out["disentanglement_note"]:
        return out
    p = Preset.named(preset)
    try:
        if scored_on_grid(model, datamodule):
            with RichProgress("disentanglement") as progress:  # a bar per metric, on stderr
                result = grid_scores(model, datamodule, p, seed, interventions, n_jobs, progress, dci_estimator)
        else:
            codes, factors, names = observed_codes(model, batches, datamodule, p.num_train + p.num_test)
            if codes is None:
                raise ValueError("the validation split has no images")
            result = observed_scores(codes, factors, names, datamodule, p, seed, n_jobs, dci_estimator)
    except ValueError as err:
        rank_zero_warn(f"evaluate: no disentanglement metrics: {err}")
        out["disentanglement_note"] = str(err).splitlines()[0]
        return out
    out.update(result["scores"])
    out.update(
        disentanglement_basis=result["basis"],
        disentanglement_n=result["n"],
        disentanglement_dropped=result["dropped"],
    )
    return out


def timed_disentanglement(*args: Any, **kwargs: Any) -> tuple[dict[str, Any], float, float]:
    """``score_disentanglement`` with its wall and process CPU seconds."""
    wall, cpu = time.perf_counter(), time.process_time()
    out = score_disentanglement(*args, **kwargs)
    return out, time.perf_counter() - wall, time.process_time() - cpu

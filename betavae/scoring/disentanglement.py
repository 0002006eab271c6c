"""Disentanglement runs of a model's codes: on a factor grid, or on the observed codes of validation images.

The metrics are those of ``betavae.disentanglement`` (the protocols of disentanglement_lib, Locatello et
al. 2019); this module decides what they run on, for any data module (``betavae.data.ground_truth``):

- **factors** (shapes, dSprites, 3D Shapes): ``evaluate_representation`` on the factor grid, images drawn
  uniformly and rendered on demand, the codes μ of ``model_representation``: every metric, the BetaVAE and
  FactorVAE scores included;
- **attributes or labels** (CelebA's 40 attributes, class labels): ``evaluate_codes`` on the codes of the
  validation images and their observed ground truth (``betavae.scoring.codes``): the sample-based
  metrics only, since nothing can render an image with one attribute changed. A class label counts as
  one 0/1 attribute per class.

A conditional model (``betavae.model_api.needs_label``) encodes with its class label, which grid images
drawn from the factors do not carry: it is scored like attribute data, on the validation images with
their labels.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from betavae.disentanglement import (
    DCIEstimator,
    Preset,
    evaluate_codes,
    evaluate_representation,
    model_representation,
    sample_codes,
)
from betavae.disentanglement.classifiers import check_dci_estimator
from betavae.model_api import evaluating, needs_label
from betavae.run_labels import datamodule_label
from betavae.scoring.codes import ground_truth_columns, ground_truth_of


@dataclass
class DisentanglementSettings:
    """How the disentanglement metrics are drawn (the ``DisentanglementMetrics`` callback's, reused by ``evaluate``).

    Args:
        preset: Sample sizes: ``"fast"``, ``"default"`` (disentanglement_lib's) or a ``Preset``.
        seed: Seed of every draw, split and estimator.
        interventions: On factor data, also the BetaVAE and FactorVAE scores.
        n_jobs: DCI's factors fitted in parallel (joblib); the scores do not depend on it.
        dci_estimator: DCI's classifier: ``"gbt"`` (disentanglement_lib's) or ``"random_forest"``
            (``betavae.disentanglement.dci_classifier``: cheaper, other numbers).
    """

    preset: str | Preset = "fast"
    seed: int = 0
    interventions: bool = True
    n_jobs: int | None = None
    dci_estimator: DCIEstimator = "gbt"


def scored_on_grid(model: Any, datamodule: Any) -> bool:
    """Whether ``model`` is scored on ``datamodule``'s factor grid (else on observed validation codes)."""
    kind, _ = ground_truth_of(datamodule)
    return kind == "factors" and not needs_label(model)


def preset_sizes(preset: str | Preset) -> dict[str, Any]:
    """A preset's name and sample sizes, for records: ``{"name": "fast", "num_train": 2000, ...}``."""
    p = Preset.named(preset)
    return {"name": preset if isinstance(preset, str) else "custom", **vars(p)}


def grid_scores(
    model: Any,
    datamodule: Any,
    preset: str | Preset,
    seed: int,
    interventions: bool = True,
    n_jobs: int | None = None,
    progress: Any = None,
    dci_estimator: DCIEstimator = "gbt",
) -> dict[str, Any]:
    """Every metric of ``model``'s μ on the factor grid of ``datamodule`` (a ``GroundTruthData``).

    With ``interventions`` ``evaluate_representation`` (all nine keys); without, only its sample-based part
    (the same draws and the same numbers for those seven keys, without the BetaVAE and FactorVAE scores).
    ``progress``: a ``betavae.disentanglement.progress.SuiteProgress`` (e.g. ``RichProgress``), or None;
    ``dci_estimator``: DCI's classifier, ``"gbt"`` or ``"random_forest"``.

    Returns:
        ``{"scores": {key: value}, "basis": ..., "n": images of the sample-based metrics, "dropped": []}``.
    """
    p = Preset.named(preset)
    with evaluating(model):
        represent = model_representation(model)
        if interventions:
            scores = evaluate_representation(
                datamodule, represent, p, seed, n_jobs=n_jobs, progress=progress, dci_estimator=dci_estimator
            )
        else:
            check_dci_estimator(dci_estimator)  # before the images are drawn
            codes, factors = sample_codes(datamodule, represent, p.num_train + p.num_test, np.random.default_rng(seed))
            scores = evaluate_codes(codes, factors, p, seed, n_jobs, progress, dci_estimator)
    sizes = "×".join(str(s) for s in datamodule.factor_sizes)
    basis = f"{datamodule_label(datamodule)} factor grid ({sizes}), uniform draws"
    return {"scores": scores, "basis": basis, "n": p.num_train + p.num_test, "dropped": []}


def observed_scores(
    codes: np.ndarray,
    factors: np.ndarray,
    names: tuple[str, ...],
    datamodule: Any,
    preset: str | Preset,
    seed: int,
    n_jobs: int | None = None,
    dci_estimator: DCIEstimator = "gbt",
) -> dict[str, Any]:
    """The sample-based metrics of validation codes (N, D) against their observed ground truth (N, K).

    Class labels become one 0/1 column per class and constant columns are dropped
    (``ground_truth_columns``); ``evaluate_codes`` needs at least two columns left. ``dci_estimator``:
    DCI's classifier, ``"gbt"`` or ``"random_forest"``.

    Raises:
        ValueError: fewer than two usable columns, or what ``evaluate_codes`` refuses (names the problem).
    """
    kind, classes = ground_truth_of(datamodule)
    columns, kept, dropped = ground_truth_columns(factors, names, kind, classes)
    if columns.shape[1] < 2:
        raise ValueError(
            f"{len(codes)} validation images leave {columns.shape[1]} ground-truth column(s) with more than one "
            f"value ({', '.join(kept) or 'none'}); the metrics compare at least 2 (more validation images?)"
        )
    scores = evaluate_codes(codes, columns, preset, seed, n_jobs, dci_estimator=dci_estimator)
    what = {"attributes": "attributes", "labels": "classes (one 0/1 column each)", "factors": "factors"}[kind]
    basis = f"{datamodule_label(datamodule)} validation split, {len(kept)} {what}"
    return {"scores": scores, "basis": basis, "n": len(codes), "dropped": list(dropped)}

"""Every metric in one call: on a ground-truth dataset, or on codes with observed factors or attributes."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from betavae.disentanglement.arrays import check_inputs, split_indices, subsample
from betavae.disentanglement.classifiers import DCIEstimator, check_dci_estimator, dci, sap
from betavae.disentanglement.grid_codes import DEFAULT_MAX_BYTES, GridCodes
from betavae.disentanglement.information import explicitness, mig, modularity
from betavae.disentanglement.interventions import betavae_score, factorvae_score
from betavae.disentanglement.progress import SuiteProgress, stage
from betavae.disentanglement.representation import Representation, sample_codes

if TYPE_CHECKING:  # the protocol only; importing betavae.data would load Lightning
    from betavae.data.ground_truth import GroundTruthData

SAMPLE_KEYS = (
    "mig",
    "sap",
    "dci_disentanglement",
    "dci_completeness",
    "dci_informativeness",
    "modularity",
    "explicitness",
)
ALL_KEYS = (*SAMPLE_KEYS, "factorvae_score", "betavae_score")


@dataclass(frozen=True)
class Preset:
    """Sample sizes of the metrics.

    Args:
        num_train: Training points of SAP and Explicitness; MIG and Modularity use these points only.
        num_test: Test points of SAP and Explicitness.
        dci_train: Training points of DCI (a subsample of the above; its gradient-boosted trees cost the most).
        dci_test: Test points of DCI.
        batch_size: Images per point of the BetaVAE score (pairs) and the FactorVAE score.
        betavae_train: Training points of the BetaVAE score.
        betavae_eval: Evaluation points of the BetaVAE score.
        factorvae_train: Training points (votes) of the FactorVAE score.
        factorvae_eval: Evaluation points of the FactorVAE score.
        factorvae_variance: Images that estimate each dimension's variance for the FactorVAE score.
        num_bins: Histogram bins of MIG and Modularity.
    """

    num_train: int
    num_test: int
    dci_train: int
    dci_test: int
    batch_size: int
    betavae_train: int
    betavae_eval: int
    factorvae_train: int
    factorvae_eval: int
    factorvae_variance: int
    num_bins: int = 20

    def __post_init__(self) -> None:
        for name, value in vars(self).items():
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"Preset.{name} must be a positive integer, got {value!r}")
        if self.batch_size < 2 or self.num_bins < 2 or self.factorvae_variance < 2:
            raise ValueError("Preset: batch_size, num_bins and factorvae_variance must be at least 2")

    @staticmethod
    def named(preset: str | Preset) -> Preset:
        """``"default"`` (disentanglement_lib's sizes) or ``"fast"``; a ``Preset`` is returned as is."""
        if isinstance(preset, Preset):
            return preset
        if preset == "default":
            return DEFAULT
        if preset == "fast":
            return FAST
        raise ValueError(f"preset must be 'default', 'fast' or a Preset, got {preset!r}")


#: disentanglement_lib's ``unsupervised_study_v1`` sizes (Locatello et al. 2019).
DEFAULT = Preset(
    num_train=10_000,
    num_test=5_000,
    dci_train=10_000,
    dci_test=5_000,
    batch_size=64,
    betavae_train=10_000,
    betavae_eval=5_000,
    factorvae_train=10_000,
    factorvae_eval=5_000,
    factorvae_variance=10_000,
)

#: Smaller samples for evaluation during training and on CPUs. On the benchmark's code
#: (``scripts/benchmark_disentanglement.py``): a fifth of the points for MIG, SAP, Modularity and
#: Explicitness (their scores move by up to 0.04); a twentieth for DCI, whose gradient-boosted trees cost
#: the most (~20 s instead of ~350 s CPU; disentanglement and completeness come out ~0.16 lower, since
#: trees fitted on few points spread their importance); a tenth for the BetaVAE score (its regularized
#: classifier needs many points: ~0.06 lower); a twentieth for the FactorVAE score (within 0.01).
#: Compare models under one preset only.
FAST = Preset(
    num_train=2_000,
    num_test=1_000,
    dci_train=500,
    dci_test=250,
    batch_size=64,
    betavae_train=1_000,
    betavae_eval=500,
    factorvae_train=500,
    factorvae_eval=250,
    factorvae_variance=2_000,
)


def evaluate_codes(
    codes: Any,
    factors: Any,
    preset: str | Preset = "default",
    seed: int = 0,
    n_jobs: int | None = None,
    progress: SuiteProgress | None = None,
    dci_estimator: DCIEstimator = "gbt",
) -> dict[str, float]:
    """The sample-based metrics of codes and their observed factors or attributes (no interventions).

    At most ``num_train + num_test`` rows are used (a seeded subsample when there are more), split
    at random into training and test rows in the preset's proportion (seeded); MIG and Modularity are
    computed on the training rows, SAP and Explicitness fitted on them and scored on the test rows. DCI
    runs on a seeded subsample of at most ``dci_train + dci_test`` of these rows, split likewise.

    Args:
        codes: Code vectors (N, D), D ≥ 2.
        factors: Factor or attribute indices (N, K), K ≥ 2, each with at least 2 values.
        preset: ``"default"``, ``"fast"`` or a ``Preset``.
        seed: Seed of the subsample, the split and the estimators.
        n_jobs: DCI's factors fitted in parallel (``dci``'s; ``None``: one process per core); the scores
            do not depend on it.
        progress: Told when each metric starts and finishes (``betavae.disentanglement.progress``).
        dci_estimator: DCI's classifier (``dci_classifier``): ``"gbt"``, disentanglement_lib's gradient-boosted
            trees, or ``"random_forest"``, 20-30x less CPU, other numbers; compare under one estimator only.

    Returns:
        ``{"mig", "sap", "dci_disentanglement", "dci_completeness", "dci_informativeness", "modularity",
        "explicitness"}``.

    Raises:
        ValueError: bad inputs or an unknown ``dci_estimator`` (before any metric runs).
    """
    p = Preset.named(preset)
    check_dci_estimator(dci_estimator)
    codes, factors = check_inputs(codes, factors, "evaluate_codes", min_dims=2, min_factors=2)
    rows = subsample(len(codes), p.num_train + p.num_test, seed)
    codes, factors = codes[rows], factors[rows]
    fraction = p.num_train / (p.num_train + p.num_test)
    train, _ = split_indices(len(codes), fraction, seed)
    few = subsample(len(codes), p.dci_train + p.dci_test, seed)
    with stage(progress, "dci"):
        scores = dci(
            codes[few],
            factors[few],
            train_fraction=p.dci_train / (p.dci_train + p.dci_test),
            seed=seed,
            estimator=dci_estimator,
            n_jobs=n_jobs,
        )
    with stage(progress, "mig"):
        mig_score = mig(codes[train], factors[train], num_bins=p.num_bins)
    with stage(progress, "sap"):
        sap_score = sap(codes, factors, train_fraction=fraction, seed=seed)
    with stage(progress, "modularity"):
        modularity_score = modularity(codes[train], factors[train], num_bins=p.num_bins)
    with stage(progress, "explicitness"):
        explicitness_score = explicitness(codes, factors, train_fraction=fraction, seed=seed)
    return {
        "mig": mig_score,
        "sap": sap_score,
        "dci_disentanglement": scores["disentanglement"],
        "dci_completeness": scores["completeness"],
        "dci_informativeness": scores["informativeness"],
        "modularity": modularity_score,
        "explicitness": explicitness_score,
    }


def evaluate_representation(
    data: GroundTruthData,
    represent: Representation,
    preset: str | Preset = "default",
    seed: int = 0,
    max_images_per_call: int = 4096,
    n_jobs: int | None = None,
    cache_bytes: int = DEFAULT_MAX_BYTES,
    progress: SuiteProgress | None = None,
    dci_estimator: DCIEstimator = "gbt",
) -> dict[str, float]:
    """Every metric of a representation on a ground-truth dataset.

    The sample-based metrics run on ``num_train + num_test`` images drawn uniformly from the factor
    grid (``evaluate_codes``); the BetaVAE and FactorVAE scores draw their own fixed-factor batches.
    Each part is seeded with ``seed``, so the same seed gives the same numbers.

    Every distinct grid image is rendered and encoded at most once and its code shared by all the
    metrics (``GridCodes``): at the default preset the metrics draw ~2.9 million factor rows from the
    737,280 images of the dSprites grid, of which ~98 % get encoded, once each.

    Args:
        data: The ground-truth dataset (``GroundTruthData``).
        represent: Images (n, C, S, S) uint8 → codes (n, D), e.g. ``model_representation(model)``.
        preset: ``"default"`` (disentanglement_lib's sample sizes), ``"fast"`` or a ``Preset``.
        seed: Seed of every draw and estimator.
        max_images_per_call: Most images rendered and encoded at once.
        n_jobs: DCI's factors fitted in parallel (``dci``'s; ``None``: one process per core); the scores
            do not depend on it.
        cache_bytes: Largest code table kept (``GridCodes``; about grid size x D x 4 bytes for float32
            codes); 0, or a table larger than this: every draw rendered and encoded when drawn (the same
            numbers, ~4x the images at the default preset).
        progress: Told when each metric starts and finishes and as factor rows are encoded
            (``betavae.disentanglement.progress``: ``RichProgress`` shows a bar, ``CostRecorder`` times).
        dci_estimator: DCI's classifier: ``"gbt"`` (the protocol's) or ``"random_forest"`` (``evaluate_codes``).

    Returns:
        ``{"mig", "sap", "dci_disentanglement", "dci_completeness", "dci_informativeness", "modularity",
        "explicitness", "factorvae_score", "betavae_score"}``.

    Raises:
        ValueError: an unknown ``dci_estimator`` (before any image is drawn), or what the metrics refuse.
    """
    p = Preset.named(preset)
    check_dci_estimator(dci_estimator)
    rng = np.random.default_rng(seed)
    cache = GridCodes(data, represent, cache_bytes, max_images_per_call)
    if progress is not None:
        cache.progress = progress.advance
        if hasattr(progress, "cache"):  # a CostRecorder counts the images of each metric
            progress.cache = cache
    total = p.num_train + p.num_test
    with stage(progress, "sampling codes", total):
        codes, factors = sample_codes(data, represent, total, rng, max_images_per_call, cache)
    scores = evaluate_codes(codes, factors, p, seed, n_jobs, progress, dci_estimator)
    factorvae_rows = p.factorvae_variance + p.batch_size * (p.factorvae_train + p.factorvae_eval)
    with stage(progress, "factorvae_score", factorvae_rows):
        scores["factorvae_score"] = factorvae_score(
            data,
            represent,
            batch_size=p.batch_size,
            num_train=p.factorvae_train,
            num_eval=p.factorvae_eval,
            num_variance_estimate=p.factorvae_variance,
            seed=seed,
            max_images_per_call=max_images_per_call,
            cache=cache,
        )
    with stage(progress, "betavae_score", 2 * p.batch_size * (p.betavae_train + p.betavae_eval)):
        scores["betavae_score"] = betavae_score(
            data,
            represent,
            batch_size=p.batch_size,
            num_train=p.betavae_train,
            num_eval=p.betavae_eval,
            seed=seed,
            max_images_per_call=max_images_per_call,
            cache=cache,
        )
    return scores

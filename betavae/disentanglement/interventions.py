"""Intervention-based scores on a ground-truth dataset: the BetaVAE and FactorVAE scores.

Both fix one factor across a batch of images and ask which factor was fixed, from the codes alone;
so they need a dataset that renders any factor combination (:class:`~betavae.data.ground_truth.GroundTruthData`),
not observed labels. Protocols of disentanglement_lib (Locatello et al. 2019; ``evaluation/metrics/beta_vae.py``,
``factor_vae.py``, ``config/unsupervised_study_v1/metric_configs/beta_vae_sklearn.gin``,
``factor_vae_metric.gin``): batches of 64 images, 10,000 training and 5,000 evaluation points, and for
FactorVAE 10,000 images to estimate each dimension's variance. The fixed factor is drawn uniformly.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
from sklearn.linear_model import LogisticRegression
from sklearn.multiclass import OneVsRestClassifier

from betavae.disentanglement.representation import Representation, draw_factors, encode_factors, sample_codes

if TYPE_CHECKING:  # the protocol only; importing betavae.data would load Lightning
    from betavae.data.ground_truth import GroundTruthData
    from betavae.disentanglement.grid_codes import GridCodes


def _check_sizes(metric: str, batch_size: int, **counts: int) -> None:
    if batch_size < 2:
        raise ValueError(f"{metric}: batch_size must be at least 2 (a variance or a mean over pairs), got {batch_size}")
    for name, value in counts.items():
        if value < 1:
            raise ValueError(f"{metric}: {name} must be positive, got {value}")


def _factor_batches(data: GroundTruthData, p: int, batch_size: int, rng: np.random.Generator) -> np.ndarray:
    """``p`` batches of factor rows drawn uniformly from the grid, (p, batch_size, K)."""
    return draw_factors(data, p * batch_size, rng).reshape(p, batch_size, -1)


def _difference_features(
    data: GroundTruthData,
    represent: Representation,
    batch_size: int,
    num_points: int,
    rng: np.random.Generator,
    max_images_per_call: int,
    cache: GridCodes | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """BetaVAE training points: mean |z(x1) − z(x2)| over a batch of pairs sharing one factor; (n, D), (n,)."""
    features, labels = [], []
    per_chunk = max(1, max_images_per_call // (2 * batch_size))
    for start in range(0, num_points, per_chunk):
        p = min(per_chunk, num_points - start)
        fixed = rng.integers(len(data.factor_sizes), size=p)  # (p,) the factor each point keeps
        first, second = _factor_batches(data, p, batch_size, rng), _factor_batches(data, p, batch_size, rng)
        rows = np.arange(p)
        second[rows, :, fixed] = first[rows, :, fixed]  # pair i shares factor fixed[i]
        pairs = np.concatenate([first, second]).reshape(2 * p * batch_size, -1)
        codes = encode_factors(data, represent, pairs, max_images_per_call, cache).reshape(2, p, batch_size, -1)
        features.append(np.abs(codes[0] - codes[1]).mean(axis=1))  # (p, D)
        labels.append(fixed)
    return np.concatenate(features), np.concatenate(labels)


def betavae_score(
    data: GroundTruthData,
    represent: Representation,
    batch_size: int = 64,
    num_train: int = 10_000,
    num_eval: int = 5_000,
    seed: int = 0,
    max_images_per_call: int = 4096,
    cache: GridCodes | None = None,
) -> float:
    """The BetaVAE score (Higgins et al. 2017, "β-VAE: Learning Basic Visual Concepts with a Constrained
    Variational Framework", ICLR), as disentanglement_lib's ``beta_vae_sklearn``.

    Each point: draw a factor k, then ``batch_size`` pairs of factor rows that share factor k's value
    (the other factors drawn independently for each image); the feature is the mean absolute difference of
    the pairs' codes (D,), the label k. A linear classifier is trained on ``num_train`` points and the
    score is its accuracy on ``num_eval`` new ones. The classifier is disentanglement_lib's
    ``LogisticRegression`` with the defaults of its scikit-learn (≤ 0.21): liblinear, one-vs-rest, C = 1,
    on the unstandardized features. Chance level: 1 / K (an independent code); a code that keeps each
    factor in a dimension of its own scores 1. Codes that mix factors linearly can still score high:
    the classifier is linear in the differences.

    Args:
        data: The ground-truth dataset.
        represent: The representation function (images → codes).
        batch_size: Pairs per point (the protocol: 64).
        num_train: Training points (the protocol: 10,000).
        num_eval: Evaluation points (the protocol: 5,000).
        seed: Seed of every draw and of liblinear.
        max_images_per_call: Most images rendered and encoded at once.
        cache: A ``GridCodes`` of ``data`` and ``represent``: each distinct image encoded once, codes
            shared with other metrics (the same draws and numbers as without).

    Returns:
        Evaluation accuracy in [0, 1].
    """
    _check_sizes("BetaVAE score", batch_size, num_train=num_train, num_eval=num_eval)
    rng = np.random.default_rng(seed)
    x_train, y_train = _difference_features(data, represent, batch_size, num_train, rng, max_images_per_call, cache)
    if len(np.unique(y_train)) < 2:
        raise ValueError(f"BetaVAE score: {num_train} training points drew a single factor; use more points")
    model = OneVsRestClassifier(LogisticRegression(solver="liblinear", random_state=seed)).fit(x_train, y_train)
    x_eval, y_eval = _difference_features(data, represent, batch_size, num_eval, rng, max_images_per_call, cache)
    return float(model.score(x_eval, y_eval))


def _votes(
    data: GroundTruthData,
    represent: Representation,
    batch_size: int,
    num_points: int,
    rng: np.random.Generator,
    scale: np.ndarray,
    active: np.ndarray,
    max_images_per_call: int,
    cache: GridCodes | None = None,
) -> np.ndarray:
    """FactorVAE votes (K, D): for each point, (fixed factor, dimension of least normalized variance)."""
    votes = np.zeros((len(data.factor_sizes), len(scale)), dtype=np.int64)
    dims = np.flatnonzero(active)
    per_chunk = max(1, max_images_per_call // batch_size)
    for start in range(0, num_points, per_chunk):
        p = min(per_chunk, num_points - start)
        fixed = rng.integers(len(data.factor_sizes), size=p)  # (p,) the factor each point keeps
        factors = _factor_batches(data, p, batch_size, rng)
        rows = np.arange(p)
        factors[rows, :, fixed] = factors[rows, :1, fixed]  # batch i shares factor fixed[i]'s first value
        codes = encode_factors(data, represent, factors.reshape(p * batch_size, -1), max_images_per_call, cache)
        local = codes.reshape(p, batch_size, -1).var(axis=1, ddof=1)  # (p, D)
        chosen = dims[np.argmin(local[:, active] / scale[active] ** 2, axis=1)]  # (p,)
        np.add.at(votes, (fixed, chosen), 1)
    return votes


def factorvae_score(
    data: GroundTruthData,
    represent: Representation,
    batch_size: int = 64,
    num_train: int = 10_000,
    num_eval: int = 5_000,
    num_variance_estimate: int = 10_000,
    prune_threshold: float = 0.05,
    seed: int = 0,
    max_images_per_call: int = 4096,
    cache: GridCodes | None = None,
) -> float:
    """The FactorVAE score (Kim & Mnih 2018, "Disentangling by Factorising", ICML), as disentanglement_lib's.

    Each dimension's standard deviation s_j is estimated on ``num_variance_estimate`` images; dimensions
    with s_j < ``prune_threshold`` (collapsed to the prior's mean) are left out. Each point: draw a
    factor k, a batch of ``batch_size`` factor rows that share factor k's value, and vote for the active
    dimension with the least variance over the batch relative to s_j². The classifier is the majority
    vote: each dimension predicts the factor that voted for it most often in ``num_train`` points; the
    score is its accuracy on ``num_eval`` new points. Chance level: about 1 / K; 0 when every dimension
    is pruned. The threshold is absolute, so a code scaled down below it scores 0, and a code whose
    dimensions each hold one factor scores 1 under any rescaling that keeps it above.

    Args:
        data: The ground-truth dataset.
        represent: The representation function (images → codes).
        batch_size: Images per point (the protocol: 64).
        num_train: Training points (the protocol: 10,000).
        num_eval: Evaluation points (the protocol: 5,000).
        num_variance_estimate: Images for the global variances (the protocol: 10,000).
        prune_threshold: Least standard deviation of an active dimension (the protocol: 0.05).
        seed: Seed of every draw.
        max_images_per_call: Most images rendered and encoded at once.
        cache: A ``GridCodes`` of ``data`` and ``represent``: each distinct image encoded once, codes
            shared with other metrics (the same draws and numbers as without).

    Returns:
        Evaluation accuracy in [0, 1].
    """
    _check_sizes("FactorVAE score", batch_size, num_train=num_train, num_eval=num_eval)
    if num_variance_estimate < 2:
        raise ValueError(f"FactorVAE score: num_variance_estimate must be at least 2, got {num_variance_estimate}")
    rng = np.random.default_rng(seed)
    codes, _ = sample_codes(data, represent, num_variance_estimate, rng, max_images_per_call, cache)
    scale = codes.std(axis=0, ddof=1)  # (D,)
    active = (scale >= prune_threshold) & (scale > 0)
    if not active.any():
        return 0.0
    args = (data, represent, batch_size)
    train_votes = _votes(*args, num_train, rng, scale, active, max_images_per_call, cache)  # (K, D)
    classifier = np.argmax(train_votes, axis=0)  # (D,) the factor each dimension stands for
    eval_votes = _votes(*args, num_eval, rng, scale, active, max_images_per_call, cache)
    return float(eval_votes[classifier, np.arange(len(scale))].sum() / eval_votes.sum())

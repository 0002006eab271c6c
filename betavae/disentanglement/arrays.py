"""Shared pieces of the sample-based metrics: input checks, the seeded split, discretization, mutual information.

The metrics take ``codes`` (N, D) floats (one code vector per image, e.g. μ of a VAE) and ``factors``
(N, K) integer indices (or one factor as (N,)), as NumPy arrays or tensors. Every check fails with one
message that says what was expected and what came.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from scipy.stats import entropy
from sklearn.metrics import mutual_info_score
from sklearn.model_selection import train_test_split


def to_numpy(array: Any) -> np.ndarray:
    """A NumPy view or copy of an array-like or a tensor (detached, on the CPU)."""
    if hasattr(array, "detach"):  # torch.Tensor, without importing torch here
        array = array.detach().cpu().numpy()
    return np.asarray(array)


def check_codes(codes: Any, metric: str) -> np.ndarray:
    """``codes`` as float64 (N, D), finite; otherwise a ValueError naming ``metric`` and the problem."""
    codes = to_numpy(codes)
    if codes.ndim != 2:
        raise ValueError(f"{metric}: codes must be a 2-d array (N samples, D dimensions), got shape {codes.shape}")
    if not (np.issubdtype(codes.dtype, np.number) or codes.dtype == bool):
        raise ValueError(f"{metric}: codes must be numbers, got dtype {codes.dtype}")
    codes = codes.astype(np.float64)
    bad = ~np.isfinite(codes)
    if bad.any():
        rows, dims = np.nonzero(bad)
        raise ValueError(
            f"{metric}: codes contain {bad.sum()} NaN or infinite values in {len(np.unique(rows))} of "
            f"{len(codes)} rows (first at row {rows[0]}, dimension {dims[0]}); a model that returns NaN "
            f"codes is broken, and such rows cannot be scored"
        )
    return codes


def check_factors(factors: Any, metric: str) -> np.ndarray:
    """``factors`` as int64 (N, K) (a 1-d array is one factor); integer-valued floats are accepted."""
    factors = to_numpy(factors)
    if factors.ndim == 1:
        factors = factors[:, None]
    if factors.ndim != 2:
        raise ValueError(f"{metric}: factors must be a 2-d array (N samples, K factors), got shape {factors.shape}")
    if np.issubdtype(factors.dtype, np.integer) or factors.dtype == bool:
        return factors.astype(np.int64)
    if not np.issubdtype(factors.dtype, np.floating):
        raise ValueError(f"{metric}: factors must be integer indices, got dtype {factors.dtype}")
    integral = np.isfinite(factors) & (factors == np.round(factors))
    if not integral.all():
        row, col = np.argwhere(~integral)[0]
        raise ValueError(
            f"{metric}: factors must be integer indices (N, K), but factor {col} holds {factors[row, col]!r} "
            f"(row {row}); map factor values to indices first, e.g. np.unique(column, return_inverse=True)[1]"
        )
    return factors.astype(np.int64)


def check_inputs(
    codes: Any, factors: Any, metric: str, min_dims: int = 1, min_factors: int = 1
) -> tuple[np.ndarray, np.ndarray]:
    """Checked ``(codes (N, D) float64, factors (N, K) int64)``: one row per sample, enough of each.

    Args:
        codes: Code vectors (N, D).
        factors: Factor indices (N, K), or (N,) for one factor.
        metric: The metric's name, for the messages.
        min_dims: Fewest code dimensions the metric is defined for.
        min_factors: Fewest factors the metric is defined for.
    """
    codes, factors = check_codes(codes, metric), check_factors(factors, metric)
    if len(codes) != len(factors):
        raise ValueError(
            f"{metric}: codes have {len(codes)} rows but factors have {len(factors)}; "
            f"both need one row per sample, in the same order"
        )
    if len(codes) < 2:
        raise ValueError(f"{metric}: needs at least 2 samples, got {len(codes)}")
    if codes.shape[1] < min_dims:
        raise ValueError(f"{metric}: needs codes with at least {min_dims} dimensions, got {codes.shape[1]}")
    if factors.shape[1] < min_factors:
        raise ValueError(f"{metric}: needs at least {min_factors} factors, got {factors.shape[1]}")
    return codes, factors


def require_variation(factors: np.ndarray, metric: str, part: str = "the samples") -> None:
    """A ValueError naming the first factor that takes a single value in ``part`` (nothing to predict)."""
    for k in range(factors.shape[1]):
        values = np.unique(factors[:, k])
        if len(values) < 2:
            raise ValueError(
                f"{metric}: factor {k} takes the single value {values[0]} in {part} ({len(factors)} rows); "
                f"a factor needs at least 2 values there (too few samples, or drop the factor)"
            )


def split_indices(n: int, train_fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """A seeded random split of ``range(n)`` into ``round(n · train_fraction)`` training and the rest test rows."""
    if not 0 < train_fraction < 1:
        raise ValueError(f"train_fraction must lie in (0, 1), got {train_fraction}")
    n_train = int(round(n * train_fraction))
    if n_train < 2 or n - n_train < 1:
        raise ValueError(
            f"{n} samples with train_fraction {train_fraction} leave {n_train} training and {n - n_train} test "
            f"rows; at least 2 and 1 are needed"
        )
    train, test = train_test_split(np.arange(n), train_size=n_train, random_state=seed)
    return np.sort(train), np.sort(test)


def subsample(n: int, size: int, seed: int) -> np.ndarray:
    """Sorted indices of a seeded random subset of ``size`` of ``range(n)``; all of them when ``n <= size``."""
    if n <= size:
        return np.arange(n)
    return np.sort(np.random.default_rng(seed).choice(n, size, replace=False))


def histogram_discretize(codes: np.ndarray, num_bins: int = 20) -> np.ndarray:
    """Each code dimension binned into ``num_bins`` equal-width bins over its own range: int (N, D) in 1..num_bins.

    disentanglement_lib's ``histogram_discretizer`` (``np.digitize`` on the left edges of
    ``np.histogram``'s bins), which its MIG and Modularity configs use with 20 bins. Only an affine map
    of a dimension leaves its bins unchanged; a non-linear monotone one moves values across bins.
    """
    if num_bins < 2:
        raise ValueError(f"num_bins must be at least 2, got {num_bins}")
    binned = np.empty(codes.shape, dtype=np.int64)
    for j in range(codes.shape[1]):
        edges = np.histogram_bin_edges(codes[:, j], bins=num_bins)
        binned[:, j] = np.digitize(codes[:, j], edges[:-1])
    return binned


def mutual_information(discrete_codes: np.ndarray, factors: np.ndarray) -> np.ndarray:
    """Plug-in mutual information I(code_j; factor_k) in nats, (D, K) (``sklearn.metrics.mutual_info_score``)."""
    mi = np.empty((discrete_codes.shape[1], factors.shape[1]))
    for j in range(discrete_codes.shape[1]):
        for k in range(factors.shape[1]):
            mi[j, k] = mutual_info_score(factors[:, k], discrete_codes[:, j])
    return mi


def factor_entropy(factors: np.ndarray) -> np.ndarray:
    """Plug-in entropy H(factor_k) in nats of each factor's empirical distribution, (K,)."""
    return np.array([entropy(np.unique(column, return_counts=True)[1]) for column in factors.T])

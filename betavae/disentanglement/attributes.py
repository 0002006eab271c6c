"""Which factor or attribute each latent dimension stands for, and how well: labels for latent traversals."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy.stats import spearmanr
from sklearn.metrics import roc_auc_score

from betavae.disentanglement.arrays import check_inputs, factor_entropy, histogram_discretize, mutual_information


@dataclass(frozen=True)
class DimensionAttribute:
    """What one latent dimension predicts best.

    Attributes:
        dim: The latent dimension.
        name: The factor or attribute it carries most information about.
        score: How well: ROC AUC for a binary attribute (0.5 chance, 1 perfect, direction-free), the
            normalized mutual information (below) for a multi-valued factor.
        measure: ``"auc"`` or ``"normalized_mi"``.
        normalized_mi: I(z_dim; v) / H(v), the fraction of the attribute's entropy the dimension carries
            (z discretized into histogram bins as in MIG); the criterion that picked ``name``.
        direction: +1 when larger codes mean the attribute present or a larger factor index, −1 the
            opposite, 0 undecided (AUC 0.5, or no rank correlation).
    """

    dim: int
    name: str
    score: float
    measure: str
    normalized_mi: float
    direction: int

    @property
    def label(self) -> str:
        """A short caption, e.g. ``"pos_x ↑ (MI 0.78)"`` or ``"Smiling ↓ (AUC 0.91)"``."""
        arrow = {1: " ↑", -1: " ↓"}.get(self.direction, "")
        measure = "AUC" if self.measure == "auc" else "MI"
        return f"{self.name}{arrow} ({measure} {self.score:.2f})"


def dimension_attributes(
    codes: Any, factors: Any, names: Sequence[str], num_bins: int = 20
) -> list[DimensionAttribute]:
    """For each code dimension, the factor or attribute it predicts best, and how well.

    The best one is chosen by normalized mutual information, I(z_j; v_k) / H(v_k) with z_j binned into
    ``num_bins`` equal-width bins (as MIG; a factor with more values than bins is capped, see ``mig``),
    which compares binary attributes and many-valued factors on one scale. The score reported is the
    ROC AUC of the raw code for a binary attribute (``sklearn.metrics.roc_auc_score``, taken as
    max(AUC, 1 − AUC) with the sign in ``direction``), the normalized MI otherwise (with the sign of
    Spearman's rank correlation in ``direction``). Constant attributes (one value) are never chosen.

    Args:
        codes: Code vectors (N, D), e.g. μ of the validation images.
        factors: Factor or attribute indices (N, K); binary attributes as 0/1 (any two integers).
        names: The K factor or attribute names.
        num_bins: Histogram bins per code dimension for the mutual information.

    Returns:
        One ``DimensionAttribute`` per dimension, in dimension order.
    """
    codes, factors = check_inputs(codes, factors, "dimension_attributes")
    if len(names) != factors.shape[1]:
        raise ValueError(f"dimension_attributes: {len(names)} names for {factors.shape[1]} factors")
    h = factor_entropy(factors)  # (K,)
    if not (h > 0).any():
        raise ValueError("dimension_attributes: every factor takes a single value; nothing to predict")
    mi = mutual_information(histogram_discretize(codes, num_bins), factors)  # (D, K)
    with np.errstate(divide="ignore", invalid="ignore"):
        normalized = np.where(h > 0, mi / h, -np.inf)  # (D, K), constant factors never win
    result = []
    for j in range(codes.shape[1]):
        k = int(np.argmax(normalized[j]))
        values = np.unique(factors[:, k])
        if len(values) == 2:
            auc = roc_auc_score(factors[:, k] == values[1], codes[:, j])
            score, measure, direction = max(auc, 1 - auc), "auc", int(np.sign(auc - 0.5))
        else:
            rho = spearmanr(codes[:, j], factors[:, k]).statistic
            score, measure = normalized[j, k], "normalized_mi"
            direction = 0 if not np.isfinite(rho) else int(np.sign(rho))
        result.append(DimensionAttribute(j, str(names[k]), float(score), measure, float(normalized[j, k]), direction))
    return result

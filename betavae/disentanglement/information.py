"""Information-based scores on (codes, factors) arrays: MIG, Modularity and Explicitness.

Protocols of disentanglement_lib (Locatello et al. 2019, "Challenging Common Assumptions in the
Unsupervised Learning of Disentangled Representations", ICML; ``evaluation/metrics/mig.py``,
``modularity_explicitness.py``, ``utils.py`` and ``config/unsupervised_study_v1/metric_configs/``): codes are
discretized into 20 equal-width histogram bins per dimension, mutual information is the plug-in
estimate on those bins, in nats. disentanglement_lib scores MIG and Modularity on 10,000 sampled points
and Explicitness on 10,000 training and 5,000 test points (``betavae.disentanglement.suite``'s presets).
"""

from __future__ import annotations

from typing import Any

import numpy as np
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score
from sklearn.multiclass import OneVsRestClassifier
from sklearn.preprocessing import StandardScaler

from betavae.disentanglement.arrays import (
    check_inputs,
    factor_entropy,
    histogram_discretize,
    mutual_information,
    require_variation,
    split_indices,
)


def mig(codes: Any, factors: Any, num_bins: int = 20) -> float:
    """Mutual Information Gap (Chen et al. 2018, "Isolating Sources of Disentanglement in VAEs", NeurIPS).

    For each factor k: (I(z_a; v_k) − I(z_b; v_k)) / H(v_k), where z_a and z_b are the two code dimensions
    with the most mutual information with v_k; the mean over factors. 0: no dimension singles the factor
    out; 1: one dimension carries all of it and no other any.

    Where the protocol caps it: a dimension discretized into ``num_bins`` bins carries at most
    log(num_bins) nats, so a factor with more values than bins cannot reach 1 even when a dimension
    equals it. On the dSprites grid with 20 bins the 40 orientations fall two per bin (cap ln 20 / ln 40 =
    0.812) and the 32 positions 12 bins of two and 8 of one (cap 4.25 / 5 = 0.85), so the true factors
    themselves score at most (1 + 1 + 0.812 + 0.85 + 0.85) / 5 = 0.902. Orientation is ambiguous for the
    symmetric shapes (a square repeats every 90°, an ellipse every 180°), so no code of the images can
    carry all of its entropy. The plug-in estimate is biased upward by about (bins − 1)(values − 1) /
    (2N) nats, which keeps the second-best dimension above 0 and an independent code slightly above 0.

    Args:
        codes: Code vectors (N, D), D ≥ 2 (the protocol: 10,000 samples).
        factors: Factor indices (N, K), each factor taking at least 2 values.
        num_bins: Histogram bins per code dimension (the protocol: 20).

    Returns:
        MIG in [0, 1].
    """
    codes, factors = check_inputs(codes, factors, "MIG", min_dims=2)
    require_variation(factors, "MIG")
    mi = mutual_information(histogram_discretize(codes, num_bins), factors)  # (D, K)
    top_two = -np.sort(-mi, axis=0)[:2]  # (2, K), largest first
    return float(np.mean((top_two[0] - top_two[1]) / factor_entropy(factors)))


def modularity(codes: Any, factors: Any, num_bins: int = 20) -> float:
    """Modularity (Ridgeway & Mozer 2018, "Learning Deep Disentangled Embeddings With the F-Statistic Loss").

    For each code dimension j with mutual informations m_jk (20-bin histogram, as MIG):
    1 − (Σ_k m_jk² − max_k m_jk²) / (max_k m_jk² · (K − 1)), i.e. 1 when the dimension informs about one
    factor only; 0 for a dimension with no information at all; the mean over dimensions.

    It does not ask whether a dimension carries *much* information, only how it is spread: an
    independent code is not near 0, because the plug-in estimate's upward bias grows with a factor's
    number of values, so noise "concentrates" on the many-valued factors (about 0.7 on the dSprites
    grid). Compare it between models, never with 0.

    Args:
        codes: Code vectors (N, D) (the protocol: the 10,000 training points).
        factors: Factor indices (N, K), K ≥ 2.
        num_bins: Histogram bins per code dimension (the protocol: 20).

    Returns:
        Modularity in [0, 1].
    """
    codes, factors = check_inputs(codes, factors, "Modularity", min_factors=2)
    squared = mutual_information(histogram_discretize(codes, num_bins), factors) ** 2  # (D, K)
    largest = squared.max(axis=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        deviation = (squared.sum(axis=1) - largest) / (largest * (squared.shape[1] - 1))
    per_dim = np.where(largest > 0, 1.0 - deviation, 0.0)
    return float(per_dim.mean())


def explicitness(codes: Any, factors: Any, train_fraction: float = 2 / 3, seed: int = 0) -> float:
    """Explicitness (Ridgeway & Mozer 2018): how well a linear classifier on the whole code predicts each factor.

    Codes are standardized with the training part's mean and standard deviation; for each factor a
    one-vs-rest L2 logistic regression (liblinear, C = 1) is fitted on the training part and scored by
    ROC AUC on the test part, averaged over the factor's values (one-vs-rest, each value present in the
    test part); the mean over factors. disentanglement_lib calls ``LogisticRegression()`` with the
    scikit-learn of its time (≤ 0.21), whose default was exactly this liblinear one-vs-rest model.

    It measures how much is linearly decodable, not how it is arranged: a rotation of the code leaves
    it (almost) unchanged. Chance level is 0.5 (an independent code), 1 a perfect linear read-out.

    Args:
        codes: Code vectors (N, D) (the protocol: 10,000 training and 5,000 test points).
        factors: Factor indices (N, K), each taking at least 2 values in the training part.
        train_fraction: Fraction of the rows used for training; the rest is the test part.
        seed: Seed of the split and of liblinear.

    Returns:
        Mean ROC AUC in [0, 1] (0.5 at chance).
    """
    codes, factors = check_inputs(codes, factors, "Explicitness")
    train, test = split_indices(len(codes), train_fraction, seed)
    require_variation(factors[train], "Explicitness", "the training part")
    scaler = StandardScaler().fit(codes[train])
    x_train, x_test = scaler.transform(codes[train]), scaler.transform(codes[test])  # (n, D) standardized
    scores = []
    for k in range(factors.shape[1]):
        classifier = OneVsRestClassifier(LogisticRegression(solver="liblinear", random_state=seed))
        probabilities = classifier.fit(x_train, factors[train, k]).predict_proba(x_test)  # (n_test, values)
        aucs = [
            roc_auc_score(factors[test, k] == value, probabilities[:, i])
            for i, value in enumerate(classifier.classes_)
            if 0 < np.sum(factors[test, k] == value) < len(test)
        ]
        if not aucs:
            raise ValueError(
                f"Explicitness: factor {k} takes a single value in the test part ({len(test)} rows); use more samples"
            )
        scores.append(np.mean(aucs))
    return float(np.mean(scores))

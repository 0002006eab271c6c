"""Predictor-based scores on (codes, factors) arrays: SAP and DCI.

Protocols of disentanglement_lib (Locatello et al. 2019; ``evaluation/metrics/sap_score.py``, ``dci.py``
and ``config/unsupervised_study_v1/metric_configs/``): each is fitted on 10,000 training points and scored
on 5,000 test points; here the rows given are split by a seeded random split (``train_fraction``, 2/3 by
default, the protocol's 10,000 : 5,000).
"""

from __future__ import annotations

from typing import Any, Literal

import numpy as np
from joblib import Parallel, cpu_count, delayed
from scipy.stats import entropy
from sklearn.base import ClassifierMixin, clone
from sklearn.ensemble import GradientBoostingClassifier, RandomForestClassifier
from sklearn.svm import LinearSVC

from betavae.disentanglement.arrays import check_inputs, require_variation, split_indices

#: The named classifiers of DCI (``dci_classifier``); ``"gbt"``, disentanglement_lib's, is the default.
DCI_ESTIMATORS = ("gbt", "random_forest")
DCIEstimator = Literal["gbt", "random_forest"]


def sap(
    codes: Any, factors: Any, train_fraction: float = 2 / 3, seed: int = 0, continuous_factors: bool = False
) -> float:
    """SAP, the Separated Attribute Predictability score (Kumar et al. 2018, "Variational Inference of
    Disentangled Latent Concepts from Unlabeled Observations", ICLR, Sec. 3).

    A score matrix S (D, K): for discrete factors (the protocol), the test accuracy of a linear SVM
    (``LinearSVC(C=0.01, class_weight="balanced")``, one-vs-rest) that predicts factor k from code
    dimension j alone; for ``continuous_factors``, the squared correlation of z_j and v_k (0 when z_j
    is constant). SAP is the mean over factors of the gap between the best and the second-best
    dimension. A one-dimensional one-vs-rest linear classifier can only separate the extreme values of a
    factor, so even a perfect code scores well below 1 on many-valued factors; compare between models.

    Args:
        codes: Code vectors (N, D), D ≥ 2.
        factors: Factor indices (N, K), each taking at least 2 values in the training part.
        train_fraction: Fraction of the rows used for training (discrete factors); the rest is the test part.
        seed: Seed of the split and of the SVMs.
        continuous_factors: Treat factors as continuous (squared correlation on all rows, no split).

    Returns:
        SAP in [0, 1].
    """
    codes, factors = check_inputs(codes, factors, "SAP", min_dims=2)
    d, k = codes.shape[1], factors.shape[1]
    if continuous_factors:
        require_variation(factors, "SAP")
        live = codes.var(axis=0, ddof=1) > 1e-12  # constant dimensions score 0, as in the protocol
        scores = np.zeros((d, k))  # (D, K)
        if live.any():
            n_live = int(live.sum())
            scores[live] = np.corrcoef(codes[:, live].T, factors.T)[:n_live, n_live:] ** 2
    else:
        train, test = split_indices(len(codes), train_fraction, seed)
        require_variation(factors[train], "SAP", "the training part")
        scores = np.empty((d, k))
        for j in range(d):
            for i in range(k):
                svm = LinearSVC(C=0.01, class_weight="balanced", random_state=seed)
                svm.fit(codes[train, j : j + 1], factors[train, i])
                scores[j, i] = np.mean(svm.predict(codes[test, j : j + 1]) == factors[test, i])
    top_two = -np.sort(-scores, axis=0)[:2]  # (2, K)
    return float(np.mean(top_two[0] - top_two[1]))


def disentanglement_completeness(importance: np.ndarray) -> tuple[float, float]:
    """DCI disentanglement and completeness of an importance matrix R (D code dimensions, K factors).

    Disentanglement: Σ_j ρ_j (1 − H_K(P_j·)), with P_jk = R_jk / Σ_k R_jk, the entropy in base K and the
    weights ρ_j = Σ_k R_jk / Σ R. Completeness: Σ_k ρ_k (1 − H_D(P̃_·k)), with P̃_jk = R_jk / Σ_j R_jk,
    base D, ρ_k = Σ_j R_jk / Σ R. As disentanglement_lib, 1e-11 is added before normalizing (a row or
    column of zeros counts as uniform) and an all-zero R weighs every row and column equally.

    Args:
        importance: Non-negative (D, K) importances, D ≥ 2 and K ≥ 2.

    Returns:
        (disentanglement, completeness), each in [0, 1].
    """
    importance = np.asarray(importance, dtype=np.float64)
    d, k = importance.shape
    if d < 2 or k < 2 or (importance < 0).any():
        raise ValueError(f"DCI needs a non-negative importance matrix with D, K ≥ 2, got shape {importance.shape}")
    per_code = 1.0 - entropy(importance.T + 1e-11, base=k)  # (D,)
    per_factor = 1.0 - entropy(importance + 1e-11, base=d)  # (K,)
    weights = importance if importance.sum() > 0 else np.ones_like(importance)
    code_weight, factor_weight = weights.sum(axis=1) / weights.sum(), weights.sum(axis=0) / weights.sum()
    return float(per_code @ code_weight), float(per_factor @ factor_weight)


def check_dci_estimator(name: str) -> str:
    """``name`` if it is one of ``DCI_ESTIMATORS``; otherwise one ValueError that names the choices."""
    if name not in DCI_ESTIMATORS:
        choices = ", ".join(repr(choice) for choice in DCI_ESTIMATORS)
        raise ValueError(f"dci_estimator must be one of {choices}; got {name!r}")
    return name


def dci_classifier(name: str = "gbt", seed: int = 0) -> ClassifierMixin:
    """DCI's classifier by name, seeded (Eastwood & Williams 2018, "A Framework for the Quantitative
    Evaluation of Disentangled Representations", ICLR).

    - ``"gbt"`` (the default): scikit-learn's default ``GradientBoostingClassifier`` (100 stages of depth-3
      trees, one tree per class per stage), the protocol of disentanglement_lib (Locatello et al. 2019).
    - ``"random_forest"``: a ``RandomForestClassifier``, the other estimator Eastwood & Williams used beside
      the lasso (their code, cianeastwood/qedr: scikit-learn's ``RandomForestRegressor``, 10 trees, depth
      tuned per model and factor). Here a classifier, since the factors are class indices as in the protocol,
      with settings fixed for every model so that its scores compare between models: 50 trees
      (``n_estimators=50``); every dimension a candidate at each split (``max_features=None``, their
      regressor's default, and what the boosted trees do: with √D candidates a split must at times use a
      dimension that carries nothing, which spreads the importances); leaves of at least 0.2 % of the
      training points (``min_samples_leaf=0.002``: 20 at the default preset, 1 at the fast preset; instead
      of a tuned depth; of the fixed sizes tried, the one whose D and C stay closest to ``"gbt"``'s at both
      presets' sizes on the benchmark code of docs/scoring_speed.md). One tree fits all classes at once, so
      it costs ~30x less CPU than ``"gbt"`` at the default preset (13 s instead of 407 s on that code),
      ~20x at the fast preset's; its scores are **not** those of ``"gbt"`` (on that code D and C 0.04-0.07
      lower, informativeness within 0.03): compare models under one estimator only.

    Args:
        name: ``"gbt"`` or ``"random_forest"``.
        seed: The classifier's ``random_state``.

    Returns:
        An unfitted classifier with ``feature_importances_`` after fitting.

    Raises:
        ValueError: an unknown name (the message names the choices).
    """
    if check_dci_estimator(name) == "random_forest":
        # n_jobs=1: dci fits the factors in parallel threads already
        return RandomForestClassifier(
            n_estimators=50, max_features=None, min_samples_leaf=0.002, n_jobs=1, random_state=seed
        )
    return GradientBoostingClassifier(random_state=seed)


def _fit_factor(
    model: ClassifierMixin, x_train: np.ndarray, y_train: np.ndarray, x_test: np.ndarray, y_test: np.ndarray
) -> tuple[np.ndarray, float]:
    """One factor's column of the importance matrix (D,) and the classifier's test accuracy."""
    model.fit(x_train, y_train)
    if not hasattr(model, "feature_importances_"):
        raise ValueError(f"DCI: {type(model).__name__} has no feature_importances_ after fitting; use trees")
    return np.abs(model.feature_importances_), float(np.mean(model.predict(x_test) == y_test))


def dci(
    codes: Any,
    factors: Any,
    train_fraction: float = 2 / 3,
    seed: int = 0,
    estimator: str | ClassifierMixin | None = None,
    n_jobs: int | None = None,
) -> dict[str, float]:
    """DCI disentanglement, completeness and informativeness (Eastwood & Williams 2018, "A Framework for the
    Quantitative Evaluation of Disentangled Representations", ICLR).

    For each factor a classifier predicts it from the whole code; its feature importances (absolute,
    summing to 1) form column k of the importance matrix R (D, K). ``disentanglement``: whether each
    dimension matters for one factor only; ``completeness``: whether each factor is captured by one
    dimension only (``disentanglement_completeness``); ``informativeness``: the classifiers' mean test
    accuracy over factors (disentanglement_lib's ``informativeness_test``; Eastwood & Williams state it
    as a prediction error, 1 − this). The protocol's classifier is scikit-learn's default
    ``GradientBoostingClassifier`` (100 trees of depth 3), seeded here; ``estimator="random_forest"`` is a
    faster, documented alternative (``dci_classifier``) whose numbers differ. Trees split on one dimension at
    a time, so any monotone map of a dimension leaves the scores unchanged.

    Args:
        codes: Code vectors (N, D), D ≥ 2.
        factors: Factor indices (N, K), K ≥ 2, each taking at least 2 values in the training part.
        train_fraction: Fraction of the rows used for training; the rest is the test part.
        seed: Seed of the split and of the classifier.
        estimator: ``None`` or ``"gbt"`` (gradient-boosted trees, the protocol's), ``"random_forest"``
            (``dci_classifier``, seeded with ``seed``), or a scikit-learn classifier with
            ``feature_importances_`` after fitting; cloned for each factor.
        n_jobs: Factors fitted in parallel threads of this process (scikit-learn builds the trees
            without the GIL; threads start nothing and add no CPU time, where worker processes cost ~8 s of
            CPU each to start; ``joblib.parallel_config(backend=...)`` overrides). ``None``: one thread per
            core, at most one per factor; 1: one at a time; -1: every core. The factors with the most
            classes (the most trees) are fitted first. The scores do not depend on it.

    Returns:
        ``{"disentanglement", "completeness", "informativeness"}``, each in [0, 1].

    Raises:
        ValueError: bad inputs, or an unknown estimator name (the message names the choices).
    """
    if estimator is None or isinstance(estimator, str):  # a name: checked before any work
        estimator = dci_classifier("gbt" if estimator is None else estimator, seed)
    codes, factors = check_inputs(codes, factors, "DCI", min_dims=2, min_factors=2)
    train, test = split_indices(len(codes), train_fraction, seed)
    require_variation(factors[train], "DCI", "the training part")
    num_factors = factors.shape[1]
    if n_jobs is None:
        n_jobs = max(1, min(num_factors, cpu_count()))
    # one boosting stage fits a tree per class: the most classes first balances the workers
    classes = [len(np.unique(factors[train, k])) for k in range(num_factors)]
    order = sorted(range(num_factors), key=lambda k: -classes[k])
    fitted = Parallel(n_jobs=n_jobs, prefer="threads")(
        delayed(_fit_factor)(clone(estimator), codes[train], factors[train, k], codes[test], factors[test, k])
        for k in order
    )
    by_factor = dict(zip(order, fitted, strict=True))
    importance = np.stack([by_factor[k][0] for k in range(num_factors)], axis=1)  # (D, K)
    accuracy = [by_factor[k][1] for k in range(num_factors)]
    disentanglement, completeness = disentanglement_completeness(importance)
    return {
        "disentanglement": disentanglement,
        "completeness": completeness,
        "informativeness": float(np.mean(accuracy)),
    }

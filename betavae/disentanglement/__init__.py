"""Disentanglement metrics: plain functions on (codes, factors) arrays and on ground-truth datasets.

The protocols of disentanglement_lib (Locatello et al. 2019, ICML), written afresh on NumPy, SciPy and
scikit-learn, each module citing its paper and sample sizes:

- on arrays, codes (N, D) floats and factors (N, K) integer indices: ``mig``, ``sap``, ``dci``,
  ``modularity``, ``explicitness`` (``information``, ``classifiers``); ``evaluate_codes`` runs them all;
- on a ``GroundTruthData`` with a representation function (images → codes): ``betavae_score``,
  ``factorvae_score`` (``interventions``); ``evaluate_representation`` runs everything;
- ``model_representation`` wraps a betavae model; ``dimension_attributes`` says what each latent
  dimension stands for (traversal labels); ``FactorGrid`` is a ground truth with known answers.

No Lightning here. Every function takes a ``seed`` where an estimator or a split has randomness.
"""

from betavae.disentanglement.arrays import histogram_discretize
from betavae.disentanglement.attributes import DimensionAttribute, dimension_attributes
from betavae.disentanglement.classifiers import (
    DCI_ESTIMATORS,
    DCIEstimator,
    dci,
    dci_classifier,
    disentanglement_completeness,
    sap,
)
from betavae.disentanglement.information import explicitness, mig, modularity
from betavae.disentanglement.interventions import betavae_score, factorvae_score
from betavae.disentanglement.representation import Representation, model_representation, sample_codes
from betavae.disentanglement.suite import (
    ALL_KEYS,
    DEFAULT,
    FAST,
    SAMPLE_KEYS,
    Preset,
    evaluate_codes,
    evaluate_representation,
)
from betavae.disentanglement.synthetic import FactorGrid

__all__ = [
    "ALL_KEYS",
    "DCI_ESTIMATORS",
    "DEFAULT",
    "FAST",
    "SAMPLE_KEYS",
    "DCIEstimator",
    "DimensionAttribute",
    "FactorGrid",
    "Preset",
    "Representation",
    "betavae_score",
    "dci",
    "dci_classifier",
    "dimension_attributes",
    "disentanglement_completeness",
    "evaluate_codes",
    "evaluate_representation",
    "explicitness",
    "factorvae_score",
    "histogram_discretize",
    "mig",
    "model_representation",
    "modularity",
    "sap",
    "sample_codes",
]

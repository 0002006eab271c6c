"""The β a run is compared by: a rule each model class declares (``comparison_beta``), looked up here for
a model class, its class path, or a class name of ``betavae.models``."""

from __future__ import annotations

import importlib
from collections.abc import Mapping
from typing import Any


def model_beta(variant: Any, hparams: Mapping[str, Any]) -> float | None:
    """The β a run is compared by: the ``comparison_beta`` its model class declares for ``hparams`` (a plain VAE
    counts as β = 1; ``None`` for models without a KL term and for the capacity loss). ``variant`` is the model
    class, its class path, or a class name of ``betavae.models``; for a class that declares no rule (not a
    betavae model), its ``beta`` hyperparameter if it has one."""
    rule = getattr(resolve_model_class(variant), "comparison_beta", None)
    if rule is not None:
        return rule(hparams)
    beta = hparams.get("beta")
    return float(beta) if beta is not None else None


def resolve_model_class(variant: Any) -> type | None:
    """The class ``variant`` names: itself if it is a class, else its class path (a bare name is looked up in
    ``betavae.models``); ``None`` when it cannot be imported."""
    if isinstance(variant, type):
        return variant
    module_name, _, name = str(variant).rpartition(".")
    try:
        module = importlib.import_module(module_name or "betavae.models")
    except ImportError:
        return None
    found = getattr(module, name, None)
    return found if isinstance(found, type) else None

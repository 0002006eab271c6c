"""The β a run is compared by (a plain VAE counts as β = 1, a deterministic autoencoder has none)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

#: variants that are VAEs with an unweighted KL (β = 1); deterministic autoencoders have no β
UNIT_BETA_VARIANTS = ("VAE", "ConditionalVAE")


def model_beta(variant: str, hparams: Mapping[str, Any]) -> float | None:
    """The β a run is compared by: the model's ``beta``; 1 for a plain (or conditional) VAE, whose KL is
    unweighted; ``None`` for models without a KL term (deterministic autoencoders, GANs) and for the capacity
    loss (``loss_type: B``, the AnnealedVAE), whose KL weight is γ and whose ``beta`` is unused."""
    if hparams.get("loss_type") == "B":
        return None
    beta = hparams.get("beta")
    if beta is None and str(variant).rsplit(".", 1)[-1] in UNIT_BETA_VARIANTS:
        return 1.0
    return float(beta) if beta is not None else None

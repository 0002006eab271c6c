"""Test-only model variants, importable by class path from the CLI (``helpers.NaNAtStepBetaVAE``)."""

from __future__ import annotations

from typing import Any

import torch

from betavae.models import BetaVAE


class NaNAtStepBetaVAE(BetaVAE):
    """A β-VAE whose training loss turns NaN from optimizer step ``nan_at_step`` on.

    Args:
        nan_at_step: First global step with a NaN loss.
        **kwargs: ``BetaVAE`` arguments.
    """

    def __init__(self, nan_at_step: int = 3, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.nan_at_step = nan_at_step

    def loss_parts(self, batch: dict[str, Any]) -> dict[str, torch.Tensor]:
        parts = super().loss_parts(batch)
        if self.training and self.global_step >= self.nan_at_step:
            parts["recon"] = parts["recon"] * float("nan")
            parts["loss"] = parts["loss"] * float("nan")
        return parts

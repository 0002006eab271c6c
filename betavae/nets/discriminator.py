"""FactorVAE's discriminator on latent codes."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from betavae.errors import ConfigError


class CodeDiscriminator(nn.Module):
    """An MLP that tells codes of q(z) from codes of Π_d q(z_d): one logit per code, positive for "q(z)".

    Kim & Mnih (2018), Appendix: 6 hidden layers of 1000 units with LeakyReLU(0.2); disentanglement_lib's
    ``fc_discriminator`` is the same. With one logit l = log D(z) − log(1 − D(z)), the density-ratio estimate
    of the total correlation is the mean logit over codes drawn from q(z).

    Args:
        latent_dim: Size of the codes.
        hidden: Widths of the hidden layers.
        negative_slope: Slope of the LeakyReLU for negative inputs.
    """

    def __init__(self, latent_dim: int, hidden: Sequence[int] = (1000,) * 6, negative_slope: float = 0.2) -> None:
        super().__init__()
        if latent_dim < 1 or any(int(h) < 1 for h in hidden):
            raise ConfigError(f"latent_dim and hidden widths must be positive, got {latent_dim} and {list(hidden)}")
        layers: list[nn.Module] = []
        width = latent_dim
        for h in hidden:
            layers += [nn.Linear(width, int(h)), nn.LeakyReLU(negative_slope)]
            width = int(h)
        layers.append(nn.Linear(width, 1))
        self.net = nn.Sequential(*layers)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.net(z).squeeze(1)  # (B, D) -> (B,) logits

"""Gaussian VAE and the study's β-VAE (Higgins et al. 2017; Burgess et al. 2018 capacity schedule)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Literal

import torch
import torch.nn.functional as F
from torch import nn

from betavae.models.base import AutoencoderModule
from betavae.models.posterior import DiagonalGaussian
from betavae.nets import ConvDecoder, ConvEncoder

STUDY_HIDDEN_CHANNELS = (32, 64, 128, 256, 512)


class VAE(AutoencoderModule):
    """Gaussian VAE with the study's convolutional encoder and decoder.

    Loss = recon + kld_weight · KL, where ``recon`` is the mean squared error between the
    reconstruction and the (normalized) input averaged over every pixel and channel of the batch
    (``F.mse_loss``, reduction ``mean``), and ``KL`` is KL(q(z|x) ‖ N(0, I)) summed over latent
    dimensions and averaged over the batch, in nats. Because ``recon`` is a per-pixel mean, the KL
    weight is small (the study's 0.0025); its scale is tied to this reduction.

    Args:
        latent_dim: Size of the latent code (the study: 128).
        hidden_channels: Channels of the encoder blocks, one stride-2 block each; the decoder mirrors
            them. The study: (32, 64, 128, 256, 512); its batik model: (32, 64, 128).
        kld_weight: Weight of the KL term (the study's ``kld_weight``, 0.0025).
        **kwargs: ``AutoencoderModule`` arguments (image shape, normalization, optimizer).
    """

    def __init__(
        self,
        latent_dim: int = 128,
        hidden_channels: Sequence[int] = STUDY_HIDDEN_CHANNELS,
        kld_weight: float = 0.0025,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        if latent_dim < 1:
            raise ValueError(f"latent_dim must be a positive integer, got {latent_dim}")
        self.latent_dim = latent_dim
        self.encoder = ConvEncoder(self.in_channels, self.image_size, hidden_channels)
        self.fc_mu = nn.Linear(self.encoder.out_features, latent_dim)
        self.fc_logvar = nn.Linear(self.encoder.out_features, latent_dim)
        self.decoder = ConvDecoder(latent_dim, self.in_channels, self.image_size, hidden_channels)

    # ----------------------------------------------------------------- public API
    def encode(self, x: torch.Tensor) -> DiagonalGaussian:
        """(B, C, H, W) normalized images → posterior with μ, log σ² of shape (B, D)."""
        h = self.encoder(x)
        return DiagonalGaussian(self.fc_mu(h), self.fc_logvar(h))

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """(B, D) codes → (B, C, H, W) images in normalized space."""
        return self.decoder(z)

    def forward(self, x: torch.Tensor, sample_posterior: bool = True) -> tuple[torch.Tensor, DiagonalGaussian]:
        """Encode, draw z (or take μ when ``sample_posterior`` is False), decode: (x̂, posterior)."""
        posterior = self.encode(x)
        z = posterior.sample() if sample_posterior else posterior.mode()
        return self.decode(z), posterior

    def reconstruct(self, x: torch.Tensor) -> torch.Tensor:
        """Decode μ: the deterministic reconstruction used for metrics and figures."""
        return self.decode(self.encode(x).mode())

    def sample(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """Decode ``n`` draws from the prior N(0, I); normalized space (use ``to_pixels`` to view)."""
        z = torch.randn(n, self.latent_dim, generator=generator, device=self.device)
        return self.decode(z)

    # ----------------------------------------------------------------- loss
    def kl_penalty(self, kl: torch.Tensor) -> dict[str, torch.Tensor]:
        """The weighted KL term (``"kl_term"``) from the batch-mean KL, plus anything worth logging."""
        return {"kl_term": self.hparams.kld_weight * kl}

    def loss_parts(self, batch: dict[str, Any]) -> dict[str, torch.Tensor]:
        x = batch["image"]
        x_hat, posterior = self(x)
        recon = F.mse_loss(x_hat, x)
        kl = posterior.kl().mean()
        extra = self.kl_penalty(kl)
        return {"loss": recon + extra.pop("kl_term"), "recon": recon, "kl": kl, **extra}

    def predict_step(self, batch: dict[str, Any], batch_idx: int) -> dict[str, torch.Tensor]:
        out = super().predict_step(batch, batch_idx)
        out["mu"] = self.encode(batch["image"]).mode()
        return out


class BetaVAE(VAE):
    """The study's β-VAE (AntixK PyTorch-VAE ``BetaVAE``), with a linear output in normalized space.

    ``loss_type: H`` (Higgins): loss = recon + β · kld_weight · KL.
    ``loss_type: B`` (Burgess): loss = recon + γ · kld_weight · |KL − C|, where the capacity C rises
    linearly from 0 to ``max_capacity`` nats over ``capacity_max_iter`` optimizer steps and then stays.
    C is a function of the trainer's global step, which the checkpoint keeps, so a resumed run
    continues the schedule. ``recon`` and ``KL`` are as in :class:`VAE`.

    Args:
        beta: β of the H loss (the study: 10 and 100).
        loss_type: ``"H"`` (Higgins) or ``"B"`` (Burgess capacity).
        gamma: γ of the B loss.
        max_capacity: C_max of the B loss, in nats.
        capacity_max_iter: Optimizer steps over which C rises from 0 to C_max.
        **kwargs: ``VAE`` arguments (latent_dim, hidden_channels, kld_weight, image shape, optimizer).
    """

    def __init__(
        self,
        beta: float = 4.0,
        loss_type: Literal["H", "B"] = "H",
        gamma: float = 1000.0,
        max_capacity: float = 25.0,
        capacity_max_iter: int = 100_000,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        if loss_type not in ("H", "B"):
            raise ValueError(f"loss_type must be 'H' (Higgins) or 'B' (Burgess), got {loss_type!r}")
        if capacity_max_iter < 1:
            raise ValueError(f"capacity_max_iter must be at least 1, got {capacity_max_iter}")

    def capacity(self, step: int | None = None) -> float:
        """C at optimizer step ``step`` (default: the trainer's global step), in nats."""
        step = self.global_step if step is None else step
        c_max = self.hparams.max_capacity
        return min(c_max, c_max * step / self.hparams.capacity_max_iter)

    def kl_penalty(self, kl: torch.Tensor) -> dict[str, torch.Tensor]:
        hp = self.hparams
        if hp.loss_type == "H":
            return {"kl_term": hp.beta * hp.kld_weight * kl}
        c = torch.tensor(self.capacity(), device=kl.device, dtype=kl.dtype)
        return {"kl_term": hp.gamma * hp.kld_weight * (kl - c).abs(), "capacity": c}

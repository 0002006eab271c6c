"""The diagonal Gaussian posterior q(z | x) = N(μ, diag(σ²))."""

from __future__ import annotations

import math

import torch

from betavae.errors import ConfigError


class DiagonalGaussian:
    """A batch of diagonal Gaussians parameterised by mean and log-variance, each of shape (B, D).

    Args:
        mean: μ, shape (B, D).
        logvar: log σ², shape (B, D).
    """

    def __init__(self, mean: torch.Tensor, logvar: torch.Tensor) -> None:
        if mean.shape != logvar.shape:
            raise ConfigError(f"mean {tuple(mean.shape)} and logvar {tuple(logvar.shape)} differ in shape")
        self.mean = mean
        self.logvar = logvar

    @property
    def std(self) -> torch.Tensor:
        return torch.exp(0.5 * self.logvar)

    def sample(self, generator: torch.Generator | None = None, noise: torch.Tensor | None = None) -> torch.Tensor:
        """A reparameterised draw z = μ + σ·ε, ε ~ N(0, I); differentiable in μ and log σ².

        ``noise`` gives ε (same shape as μ) instead of drawing it (with ``generator``)."""
        eps = noise
        if eps is None:
            eps = torch.randn(self.mean.shape, generator=generator, device=self.mean.device, dtype=self.mean.dtype)
        return self.mean + self.std * eps.to(self.mean.dtype)

    def mode(self) -> torch.Tensor:
        """The most likely code, μ."""
        return self.mean

    def log_prob_per_dim(self, z: torch.Tensor) -> torch.Tensor:
        """log N(z_d; μ_d, σ_d²) of each dimension in nats; ``z`` broadcasts against μ, e.g. codes (B, 1, D)
        against a posterior built from (1, B, D) parameters give the (B, B, D) matrix of every code under
        every image's posterior."""
        return -0.5 * ((z - self.mean).pow(2) * torch.exp(-self.logvar) + self.logvar + math.log(2 * math.pi))

    def kl_per_dim(self) -> torch.Tensor:
        """KL(q ‖ N(0, I)) of each latent dimension in nats, shape (B, D)."""
        return -0.5 * (1 + self.logvar - self.mean.pow(2) - self.logvar.exp())

    def kl(self) -> torch.Tensor:
        """KL(q ‖ N(0, I)) in nats, summed over latent dimensions, shape (B,)."""
        return self.kl_per_dim().sum(dim=1)

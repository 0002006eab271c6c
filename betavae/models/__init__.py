"""LightningModules: one shared base, each variant a small subclass."""

from betavae.models.base import AutoencoderModule, NonFiniteLossError
from betavae.models.posterior import DiagonalGaussian
from betavae.models.vae import VAE, BetaVAE

__all__ = ["VAE", "AutoencoderModule", "BetaVAE", "DiagonalGaussian", "NonFiniteLossError"]

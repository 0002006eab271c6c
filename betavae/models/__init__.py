"""LightningModules: one shared base, each variant a small subclass."""

from betavae.models.autoencoder import Autoencoder
from betavae.models.base import AutoencoderModule, NonFiniteLossError
from betavae.models.corruption import Corruption, Downsample, GaussianNoise, Masking
from betavae.models.gan import DCGAN
from betavae.models.posterior import DiagonalGaussian
from betavae.models.vae import VAE, BetaVAE, ConditionalVAE

__all__ = [
    "VAE",
    "Autoencoder",
    "AutoencoderModule",
    "BetaVAE",
    "ConditionalVAE",
    "Corruption",
    "DCGAN",
    "DiagonalGaussian",
    "Downsample",
    "GaussianNoise",
    "Masking",
    "NonFiniteLossError",
]

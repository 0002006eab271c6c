"""LightningModules: one shared base, each variant a small subclass."""

from betavae.models.autoencoder import Autoencoder
from betavae.models.base import AutoencoderModule, NonFiniteLossError
from betavae.models.corruption import Corruption, Downsample, GaussianNoise, Masking
from betavae.models.disentangling import DIPVAE, BetaTCVAE
from betavae.models.factor_vae import FactorVAE
from betavae.models.gan import DCGAN
from betavae.models.posterior import DiagonalGaussian
from betavae.models.vae import VAE, BetaVAE, ConditionalVAE

__all__ = [
    "DIPVAE",
    "VAE",
    "Autoencoder",
    "AutoencoderModule",
    "BetaTCVAE",
    "BetaVAE",
    "ConditionalVAE",
    "Corruption",
    "DCGAN",
    "DiagonalGaussian",
    "Downsample",
    "FactorVAE",
    "GaussianNoise",
    "Masking",
    "NonFiniteLossError",
]

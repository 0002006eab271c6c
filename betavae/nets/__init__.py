"""Plain ``nn.Module`` architectures; no Lightning inside.

The study's VAE encoder/decoder (``ConvEncoder``, ``ConvDecoder``), Burgess et al.'s / disentanglement_lib's
(``BurgessEncoder``, ``BurgessDecoder``), and the networks of the deterministic autoencoders (``LinearNet``,
``StackedDenseNet``, ``ConvNet``, ``RecurrentNet``, ``ResidualSRNet``): each takes ``(in_channels, image_size,
...)`` and has ``encode(x) -> code`` and ``decode(code) -> (B, C, H, W)``. FactorVAE's ``CodeDiscriminator``
classifies latent codes; the DCGAN's generators and discriminators are ``ChapterGenerator``/
``ChapterDiscriminator`` and ``RadfordGenerator``/``RadfordDiscriminator``.
"""

from betavae.nets.burgess import BurgessDecoder, BurgessEncoder
from betavae.nets.conv import ConvDecoder, ConvEncoder, ConvNet, bottleneck_size
from betavae.nets.dense import LinearNet, StackedDenseNet
from betavae.nets.discriminator import CodeDiscriminator
from betavae.nets.gan import ChapterDiscriminator, ChapterGenerator, RadfordDiscriminator, RadfordGenerator
from betavae.nets.recurrent import RecurrentNet
from betavae.nets.superres import ResidualSRNet

__all__ = [
    "BurgessDecoder",
    "BurgessEncoder",
    "CodeDiscriminator",
    "ChapterDiscriminator",
    "ChapterGenerator",
    "ConvDecoder",
    "ConvEncoder",
    "ConvNet",
    "LinearNet",
    "RadfordDiscriminator",
    "RadfordGenerator",
    "RecurrentNet",
    "ResidualSRNet",
    "StackedDenseNet",
    "bottleneck_size",
]

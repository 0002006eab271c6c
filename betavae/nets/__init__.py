"""Plain ``nn.Module`` architectures; no Lightning inside.

The study's VAE encoder/decoder (``ConvEncoder``, ``ConvDecoder``), Burgess et al.'s / disentanglement_lib's
(``BurgessEncoder``, ``BurgessDecoder``), and the networks of the
deterministic autoencoders (``LinearNet``, ``StackedDenseNet``, ``ConvNet``, ``RecurrentNet``): each takes
``(in_channels, image_size, ...)`` and has ``encode(x) -> code`` and ``decode(code) -> (B, C, H, W)``.
FactorVAE's ``CodeDiscriminator`` classifies latent codes.
"""

from betavae.nets.burgess import BurgessDecoder, BurgessEncoder
from betavae.nets.conv import ConvDecoder, ConvEncoder, ConvNet, bottleneck_size
from betavae.nets.dense import LinearNet, StackedDenseNet
from betavae.nets.discriminator import CodeDiscriminator
from betavae.nets.recurrent import RecurrentNet

__all__ = [
    "BurgessDecoder",
    "BurgessEncoder",
    "CodeDiscriminator",
    "ConvDecoder",
    "ConvEncoder",
    "ConvNet",
    "LinearNet",
    "RecurrentNet",
    "StackedDenseNet",
    "bottleneck_size",
]

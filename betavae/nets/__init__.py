"""Plain ``nn.Module`` architectures; no Lightning inside.

The study's VAE encoder/decoder (``ConvEncoder``, ``ConvDecoder``); the networks of the deterministic
autoencoders (``LinearNet``, ``StackedDenseNet``, ``ConvNet``, ``RecurrentNet``, ``ResidualSRNet``): each takes
``(in_channels, image_size, ...)`` and has ``encode(x) -> code`` and ``decode(code) -> (B, C, H, W)``; and the
DCGAN's generators and discriminators (``ChapterGenerator``/``ChapterDiscriminator``, ``RadfordGenerator``/
``RadfordDiscriminator``).
"""

from betavae.nets.conv import ConvDecoder, ConvEncoder, ConvNet, bottleneck_size
from betavae.nets.dense import LinearNet, StackedDenseNet
from betavae.nets.gan import ChapterDiscriminator, ChapterGenerator, RadfordDiscriminator, RadfordGenerator
from betavae.nets.recurrent import RecurrentNet
from betavae.nets.superres import ResidualSRNet

__all__ = [
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

"""Plain ``nn.Module`` architectures; no Lightning inside."""

from betavae.nets.conv import ConvDecoder, ConvEncoder, bottleneck_size

__all__ = ["ConvDecoder", "ConvEncoder", "bottleneck_size"]

"""Super-resolution without an information bottleneck: a residual over the interpolated input (VDSR)."""

from __future__ import annotations

import torch
from torch import nn

from betavae.errors import ConfigError
from betavae.nets.checks import check_positive


class ResidualSRNet(nn.Module):
    """Residual super-resolution network in the manner of VDSR (Kim, Lee and Lee, *Accurate Image
    Super-Resolution Using Very Deep Convolutional Networks*, CVPR 2016): the input is the low-resolution
    image already interpolated to full size (what ``betavae.models.Downsample`` gives), and a stack of
    3×3 convolutions predicts only the missing detail, which is added to it.

    ``encode(x)`` is ``x`` itself: the "code" is the full-size input, so no information is thrown away (an
    autoencoder's bottleneck would have to squeeze the image through a small code first, and its output
    could then lose detail the input still had). ``decode(code)`` = code + body(code), with body =
    Conv(C → w) + ReLU, (depth − 2) × [Conv(w → w) + ReLU], Conv(w → C). The last convolution starts at zero,
    so the untrained network returns its input unchanged: training starts from the interpolation and can
    only learn to improve on it. Use it with a linear output (``output_activation: identity``), so the
    residual is added in the model's normalized space.

    Args:
        in_channels: Image channels.
        image_size: Image height and width (any size: the network is fully convolutional).
        width: Channels of the hidden convolutions (VDSR: 64).
        depth: Number of convolutions, at least 2 (VDSR: 20).
    """

    def __init__(self, in_channels: int, image_size: int, width: int = 32, depth: int = 6) -> None:
        super().__init__()
        check_positive(in_channels=in_channels, image_size=image_size, width=width)
        if depth < 2:
            raise ConfigError(f"depth must be at least 2 (a first and a last convolution), got {depth}")
        layers: list[nn.Module] = [nn.Conv2d(in_channels, width, 3, padding=1), nn.ReLU()]
        for _ in range(depth - 2):
            layers += [nn.Conv2d(width, width, 3, padding=1), nn.ReLU()]
        last = nn.Conv2d(width, in_channels, 3, padding=1)
        nn.init.zeros_(last.weight)
        nn.init.zeros_(last.bias)
        self.body = nn.Sequential(*layers, last)

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        return x  # (B, C, H, W): the interpolated image itself, nothing discarded

    def decode(self, code: torch.Tensor) -> torch.Tensor:
        return code + self.body(code)  # (B, C, H, W): the input plus the predicted detail

"""The study's convolutional encoder and decoder (AntixK PyTorch-VAE ``BetaVAE``), for any size.

The reference hard-codes 64x64 RGB input (``hidden_dims[-1] * 4`` features, a 2x2 bottleneck and a
3-channel Tanh output). Here the bottleneck size follows from ``image_size`` and the number of blocks,
the channel count is free, and the output is linear so it can reach the whole normalized range.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn


def bottleneck_size(image_size: int, num_blocks: int) -> int:
    """Spatial size after ``num_blocks`` stride-2 convolutions, or a ``ValueError`` saying why not."""
    if num_blocks < 1:
        raise ValueError("hidden_channels must name at least one block, got an empty list")
    if image_size < 1:
        raise ValueError(f"image_size must be positive, got {image_size}")
    factor = 2**num_blocks
    if image_size % factor:
        raise ValueError(
            f"image_size={image_size} is not divisible by 2**{num_blocks}={factor}: each of the "
            f"{num_blocks} encoder blocks halves the image (stride 2) and the decoder doubles it back, "
            f"so the size must be a multiple of {factor} (e.g. {factor * max(1, image_size // factor)}), "
            f"or use fewer hidden_channels"
        )
    return image_size // factor


def _check_positive(name: str, values: Sequence[int]) -> None:
    if any(int(v) < 1 for v in values):
        raise ValueError(f"{name} must all be positive integers, got {list(values)}")


class ConvEncoder(nn.Module):
    """Stride-2 Conv2d(k=3, p=1) → BatchNorm → LeakyReLU blocks, flattened.

    Args:
        in_channels: Image channels (1 or 3).
        image_size: Height and width of the (square) input; a multiple of ``2 ** len(hidden_channels)``.
        hidden_channels: Output channels of each block; the study uses (32, 64, 128, 256, 512).
    """

    def __init__(self, in_channels: int, image_size: int, hidden_channels: Sequence[int]) -> None:
        super().__init__()
        hidden_channels = tuple(int(c) for c in hidden_channels)
        _check_positive("in_channels", [in_channels])
        _check_positive("hidden_channels", hidden_channels)
        self.bottleneck = bottleneck_size(image_size, len(hidden_channels))
        self.out_shape = (hidden_channels[-1], self.bottleneck, self.bottleneck)
        self.out_features = hidden_channels[-1] * self.bottleneck**2

        blocks = []
        channels = in_channels
        for h in hidden_channels:
            blocks.append(
                nn.Sequential(
                    nn.Conv2d(channels, h, kernel_size=3, stride=2, padding=1),
                    nn.BatchNorm2d(h),
                    nn.LeakyReLU(),
                )
            )
            channels = h
        self.blocks = nn.Sequential(*blocks)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # (B, C, H, W) -> (B, hidden[-1], H / 2^n, W / 2^n) -> (B, F)
        return self.blocks(x).flatten(1)


class ConvDecoder(nn.Module):
    """Linear → reshape → ConvTranspose2d(k=3, s=2, p=1, output_padding=1) → BN → LeakyReLU blocks,
    a final ConvTranspose block, and Conv2d(k=3, p=1) to the image channels, with a linear output.

    Args:
        latent_dim: Size of the code ``z``.
        out_channels: Image channels (1 or 3).
        image_size: Output height and width; a multiple of ``2 ** len(hidden_channels)``.
        hidden_channels: The encoder's channels, in encoder order; the decoder runs them in reverse.
    """

    def __init__(self, latent_dim: int, out_channels: int, image_size: int, hidden_channels: Sequence[int]) -> None:
        super().__init__()
        hidden = tuple(int(c) for c in reversed(tuple(hidden_channels)))  # e.g. 512, 256, ..., 32
        _check_positive("latent_dim", [latent_dim])
        _check_positive("out_channels", [out_channels])
        _check_positive("hidden_channels", hidden)
        s = bottleneck_size(image_size, len(hidden))
        self.in_shape = (hidden[0], s, s)

        self.fc = nn.Linear(latent_dim, hidden[0] * s * s)
        self.blocks = nn.Sequential(*[self._up(hidden[i], hidden[i + 1]) for i in range(len(hidden) - 1)])
        self.final = nn.Sequential(
            self._up(hidden[-1], hidden[-1]),
            nn.Conv2d(hidden[-1], out_channels, kernel_size=3, padding=1),
        )

    @staticmethod
    def _up(cin: int, cout: int) -> nn.Module:
        return nn.Sequential(
            nn.ConvTranspose2d(cin, cout, kernel_size=3, stride=2, padding=1, output_padding=1),
            nn.BatchNorm2d(cout),
            nn.LeakyReLU(),
        )

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        h = self.fc(z).view(z.shape[0], *self.in_shape)  # (B, hidden[-1], s, s)
        return self.final(self.blocks(h))  # (B, C, H, W)

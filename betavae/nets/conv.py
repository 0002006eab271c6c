"""The study's convolutional encoder and decoder (AntixK PyTorch-VAE ``BetaVAE``), for any size.

The reference hard-codes 64x64 RGB input (``hidden_dims[-1] * 4`` features, a 2x2 bottleneck and a
3-channel Tanh output). Here the bottleneck size follows from ``image_size`` and the number of blocks,
the channel count is free, and the output is linear so it can reach the whole normalized range.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from betavae.errors import ConfigError
from betavae.nets.checks import check_positive

#: the study's encoder channels, one stride-2 block each (AntixK PyTorch-VAE ``hidden_dims``)
STUDY_HIDDEN_CHANNELS = (32, 64, 128, 256, 512)


def bottleneck_size(image_size: int, num_blocks: int) -> int:
    """Spatial size after ``num_blocks`` stride-2 convolutions, or a ``ValueError`` saying why not."""
    if num_blocks < 1:
        raise ConfigError("hidden_channels must name at least one block, got an empty list")
    if image_size < 1:
        raise ConfigError(f"image_size must be positive, got {image_size}")
    factor = 2**num_blocks
    if image_size % factor:
        raise ConfigError(
            f"image_size={image_size} is not divisible by 2**{num_blocks}={factor}: each of the "
            f"{num_blocks} encoder blocks halves the image (stride 2) and the decoder doubles it back, "
            f"so the size must be a multiple of {factor} (e.g. {factor * max(1, image_size // factor)}), "
            f"or use fewer hidden_channels"
        )
    return image_size // factor


class ConvEncoder(nn.Module):
    """Stride-2 Conv2d(k=3, p=1) → BatchNorm → LeakyReLU blocks, flattened.

    Args:
        in_channels: Input channels: the image's (1 or 3), plus any condition planes (the conditional VAE's labels).
        image_size: Height and width of the (square) input; a multiple of ``2 ** len(hidden_channels)``.
        hidden_channels: Output channels of each block; the study uses (32, 64, 128, 256, 512).
    """

    def __init__(
        self, in_channels: int, image_size: int, hidden_channels: Sequence[int] = STUDY_HIDDEN_CHANNELS
    ) -> None:
        super().__init__()
        hidden_channels = tuple(int(c) for c in hidden_channels)
        check_positive(in_channels=in_channels)
        check_positive(hidden_channels=hidden_channels)
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
        out_channels: Output image channels.
        image_size: Output height and width; a multiple of ``2 ** len(hidden_channels)``.
        hidden_channels: The encoder's channels, in encoder order; the decoder runs them in reverse.
        kernel_size: Kernel of the ConvTranspose2d blocks: 3 (the study's: stride 2, padding 1, output
            padding 1) or 4 (stride 2, padding 1, no output padding); both double the size exactly.
    """

    def __init__(
        self,
        latent_dim: int,
        out_channels: int,
        image_size: int,
        hidden_channels: Sequence[int] = STUDY_HIDDEN_CHANNELS,
        kernel_size: int = 3,
    ) -> None:
        super().__init__()
        if kernel_size not in (3, 4):
            raise ConfigError(f"kernel_size must be 3 or 4 (both double the size with stride 2), got {kernel_size}")
        self.kernel_size = kernel_size
        hidden = tuple(int(c) for c in reversed(tuple(hidden_channels)))  # e.g. 512, 256, ..., 32
        check_positive(latent_dim=latent_dim)
        check_positive(out_channels=out_channels)
        check_positive(hidden_channels=hidden)
        s = bottleneck_size(image_size, len(hidden))
        self.in_shape = (hidden[0], s, s)

        self.fc = nn.Linear(latent_dim, hidden[0] * s * s)
        self.blocks = nn.Sequential(*[self._up(hidden[i], hidden[i + 1]) for i in range(len(hidden) - 1)])
        self.final = nn.Sequential(
            self._up(hidden[-1], hidden[-1]),
            nn.Conv2d(hidden[-1], out_channels, kernel_size=3, padding=1),
        )

    def _up(self, cin: int, cout: int) -> nn.Module:
        k = self.kernel_size
        return nn.Sequential(
            nn.ConvTranspose2d(cin, cout, kernel_size=k, stride=2, padding=1, output_padding=4 - k),
            nn.BatchNorm2d(cout),
            nn.LeakyReLU(),
        )

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        h = self.fc(z).view(z.shape[0], *self.in_shape)  # (B, hidden[-1], s, s)
        return self.final(self.blocks(h))  # (B, C, H, W)


def conv_sizes(image_size: int, num_layers: int) -> list[int]:
    """Spatial sizes through ``num_layers`` Conv2d(k=3, s=2, p=1): each is ceil(previous / 2)."""
    sizes = [image_size]
    for _ in range(num_layers):
        sizes.append((sizes[-1] + 1) // 2)
    return sizes


class ConvNet(nn.Module):
    """Convolutional autoencoder for the deterministic models: Conv2d(k=3, s=2, p=1) + ReLU layers,
    then either a linear code (``latent_dim``) or the last feature map itself as a spatial code
    (``latent_dim: null``); the decoder mirrors it with ConvTranspose2d layers whose output padding
    is chosen so every size comes back exactly (28 → 14 → 7 → 4 → 7 → 14 → 28).

    The textbook Fashion-MNIST setups: 32×32 input, ``hidden_channels=(32, 64, 128)``, ``latent_dim=2``
    (a 128×4×4 = 2048 → 2 linear code); 28×28 input, ``hidden_channels=(16, 32, 64)``,
    ``latent_dim=None`` (a 64×4×4 spatial code).

    Args:
        in_channels: Image channels.
        image_size: Image height and width; at least ``2 ** (len(hidden_channels) - 1)``.
        hidden_channels: Output channels of the encoder's conv layers.
        latent_dim: Size of a linear code, or ``None`` for the spatial code (last feature map).
    """

    def __init__(
        self,
        in_channels: int,
        image_size: int,
        hidden_channels: Sequence[int] = (32, 64, 128),
        latent_dim: int | None = 2,
    ) -> None:
        super().__init__()
        hidden = tuple(int(c) for c in hidden_channels)
        check_positive(in_channels=in_channels)
        check_positive(hidden_channels=hidden)
        if not hidden:
            raise ConfigError("hidden_channels must name at least one conv layer, got an empty list")
        if latent_dim is not None:
            check_positive(latent_dim=latent_dim)
        if image_size < 2 ** (len(hidden) - 1):
            raise ConfigError(
                f"image_size={image_size} is too small for {len(hidden)} stride-2 conv layers: the last "
                f"would see less than 2x2 pixels; use image_size >= {2 ** (len(hidden) - 1)} or fewer layers"
            )
        sizes = conv_sizes(image_size, len(hidden))
        n, s = len(hidden), sizes[-1]
        channels = (in_channels, *hidden)
        self.spatial = latent_dim is None
        self.feature_shape = (hidden[-1], s, s)
        self.code_shape = self.feature_shape if self.spatial else (latent_dim,)

        down = []
        for cin, cout in zip(channels, channels[1:], strict=False):
            down += [nn.Conv2d(cin, cout, kernel_size=3, stride=2, padding=1), nn.ReLU()]
        self.encoder = nn.Sequential(*down)
        self.to_code = nn.Identity() if self.spatial else nn.Linear(hidden[-1] * s * s, latent_dim)
        self.from_code = nn.Identity() if self.spatial else nn.Linear(latent_dim, hidden[-1] * s * s)

        up = []
        for i, cout in zip(range(n, 0, -1), (*reversed(hidden[:-1]), in_channels), strict=True):
            pad = sizes[i - 1] - (2 * sizes[i] - 1)  # output padding that restores size sizes[i - 1]
            up += [nn.ConvTranspose2d(channels[i], cout, 3, stride=2, padding=1, output_padding=pad), nn.ReLU()]
        self.decoder = nn.Sequential(*up[:-1])  # the last layer's output stays linear

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        h = self.encoder(x)  # (B, hidden[-1], s, s)
        return h if self.spatial else self.to_code(h.flatten(1))  # spatial code, or (B, D)

    def decode(self, code: torch.Tensor) -> torch.Tensor:
        h = self.from_code(code).view(-1, *self.feature_shape)  # (B, hidden[-1], s, s)
        return self.decoder(h)  # (B, C, H, W)

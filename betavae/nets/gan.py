"""Generator and discriminator pairs for the DCGAN baseline; plain ``nn.Module``s, no Lightning inside.

- The chapter's pair (Géron, *Hands-On Machine Learning*, 2nd ed., ch. 17, "Deep Convolutional GANs"), for
  28×28 Fashion-MNIST: ``ChapterGenerator`` and ``ChapterDiscriminator``.
- Radford et al.'s pair (*Unsupervised Representation Learning with Deep Convolutional Generative
  Adversarial Networks*, ICLR 2016; the layout of the PyTorch DCGAN example) for 64×64 images:
  ``RadfordGenerator`` and ``RadfordDiscriminator``.

Every generator maps codes (B, latent_dim) to images (B, C, H, W) in [-1, 1] (a tanh output); every
discriminator maps such images to one logit per image (B,): the sigmoid of the chapter's and the paper's
last layer is folded into the loss (``binary_cross_entropy_with_logits``, the same value, numerically
stable). Constructors take ``(latent_dim, out_channels, image_size, ...)`` and ``(in_channels, image_size,
...)`` so that ``betavae.models.DCGAN`` can fill in the data's shape.
"""

from __future__ import annotations

import torch
from torch import nn

from betavae.errors import ConfigError
from betavae.nets.checks import check_positive


def _check_chapter_size(image_size: int) -> int:
    if image_size % 4:
        raise ConfigError(
            f"image_size={image_size} is not divisible by 4: the chapter's generator starts at image_size/4 "
            "(7x7 for 28x28) and doubles twice; use e.g. 28 or 32"
        )
    return image_size // 4


def radford_blocks(image_size: int) -> int:
    """Number of stride-2 layers between 4×4 and ``image_size`` (4 for 64×64), or a ``ConfigError``."""
    blocks, size = 0, image_size
    while size > 4 and size % 2 == 0:
        size //= 2
        blocks += 1
    if size != 4 or blocks < 1:
        raise ConfigError(
            f"image_size={image_size} is not 4 * 2**k (k >= 1): Radford's networks go between 4x4 and the image "
            "size by stride-2 steps; use 8, 16, 32, 64 (the paper) or 128"
        )
    return blocks


def radford_init(module: nn.Module) -> None:
    """Radford et al.'s initialisation: conv weights ~ N(0, 0.02); BatchNorm scale ~ N(1, 0.02), shift 0.

    Use as ``net.apply(radford_init)``.
    """
    if isinstance(module, (nn.Conv2d, nn.ConvTranspose2d)):
        nn.init.normal_(module.weight, 0.0, 0.02)
        if module.bias is not None:
            nn.init.zeros_(module.bias)
    elif isinstance(module, nn.BatchNorm2d):
        nn.init.normal_(module.weight, 1.0, 0.02)
        nn.init.zeros_(module.bias)


def keras_init(module: nn.Module) -> None:
    """Keras' defaults, which the chapter's code uses: Glorot-uniform weights, zero biases."""
    if isinstance(module, (nn.Linear, nn.Conv2d, nn.ConvTranspose2d)):
        nn.init.xavier_uniform_(module.weight)
        if module.bias is not None:
            nn.init.zeros_(module.bias)


class ChapterGenerator(nn.Module):
    """The chapter's DCGAN generator: Dense(latent → 128·s·s) → reshape (128, s, s) → BN →
    ConvTranspose(128 → 64, k5, s2, "same") + SELU → BN → ConvTranspose(64 → C, k5, s2, "same") + tanh,
    with s = image_size / 4 (7 for 28×28). "same" padding is padding 2 with output padding 1 (exactly 2×).

    Keras' initialisation (Glorot uniform); PyTorch's BatchNorm defaults (momentum 0.1, ε 1e-5, where
    Keras has 0.01 and 1e-3).

    Args:
        latent_dim: Size of the code z (the chapter: 100).
        out_channels: Image channels.
        image_size: Output height and width; a multiple of 4.
        channels: Channels of the two feature maps (the chapter: 128 and 64).
    """

    def __init__(
        self, latent_dim: int, out_channels: int, image_size: int, channels: tuple[int, int] = (128, 64)
    ) -> None:
        super().__init__()
        check_positive(latent_dim=latent_dim, out_channels=out_channels, channels_0=channels[0], channels_1=channels[1])
        s = _check_chapter_size(image_size)
        self.start_shape = (channels[0], s, s)
        self.fc = nn.Linear(latent_dim, channels[0] * s * s)
        self.body = nn.Sequential(
            nn.BatchNorm2d(channels[0]),
            nn.ConvTranspose2d(channels[0], channels[1], 5, stride=2, padding=2, output_padding=1),
            nn.SELU(),
            nn.BatchNorm2d(channels[1]),
            nn.ConvTranspose2d(channels[1], out_channels, 5, stride=2, padding=2, output_padding=1),
            nn.Tanh(),
        )
        self.apply(keras_init)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        h = self.fc(z).view(z.shape[0], *self.start_shape)  # (B, 128, s, s)
        return self.body(h)  # (B, C, 4s, 4s) in [-1, 1]


class ChapterDiscriminator(nn.Module):
    """The chapter's DCGAN discriminator: Conv(C → 64, k5, s2, "same") + LeakyReLU(0.2) → Dropout(0.4) →
    Conv(64 → 128, k5, s2, "same") + LeakyReLU(0.2) → Dropout(0.4) → flatten → Dense(1) (a logit; the
    chapter's sigmoid is in the loss). Keras' initialisation.

    Args:
        in_channels: Image channels.
        image_size: Image height and width; a multiple of 4.
        channels: Channels of the two conv layers (the chapter: 64 and 128).
        dropout: Dropout rate after each conv layer (the chapter: 0.4).
    """

    def __init__(
        self, in_channels: int, image_size: int, channels: tuple[int, int] = (64, 128), dropout: float = 0.4
    ) -> None:
        super().__init__()
        check_positive(in_channels=in_channels, channels_0=channels[0], channels_1=channels[1])
        if not 0 <= dropout < 1:
            raise ConfigError(f"dropout must be in [0, 1), got {dropout}")
        s = _check_chapter_size(image_size)
        self.features = nn.Sequential(
            nn.Conv2d(in_channels, channels[0], 5, stride=2, padding=2),
            nn.LeakyReLU(0.2),
            nn.Dropout(dropout),
            nn.Conv2d(channels[0], channels[1], 5, stride=2, padding=2),
            nn.LeakyReLU(0.2),
            nn.Dropout(dropout),
        )
        self.fc = nn.Linear(channels[1] * s * s, 1)
        self.apply(keras_init)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.features(x).flatten(1)).squeeze(1)  # (B, C, H, W) -> (B,) logits


class RadfordGenerator(nn.Module):
    """Radford et al.'s generator: ConvTranspose(latent → 8f, k4, s1, p0) to 4×4, then stride-2
    ConvTranspose(k4, s2, p1) layers halving the channels (8f → 4f → 2f → f at 64×64) to ``out_channels``,
    BatchNorm and ReLU everywhere but the output, which is tanh. f = ``features`` (64: 4×4×512 from z of 100,
    as in the paper's PyTorch example). Weights ~ N(0, 0.02).

    Args:
        latent_dim: Size of the code z (the paper: 100).
        out_channels: Image channels.
        image_size: Output height and width: 4 · 2^k (64 in the paper).
        features: Channels of the last hidden layer; the first has features · 2^(k-1).
    """

    def __init__(self, latent_dim: int, out_channels: int, image_size: int, features: int = 64) -> None:
        super().__init__()
        check_positive(latent_dim=latent_dim, out_channels=out_channels, features=features)
        k = radford_blocks(image_size)
        widths = [features * 2 ** (k - 1 - i) for i in range(k)]  # e.g. 512, 256, 128, 64
        layers: list[nn.Module] = [
            nn.ConvTranspose2d(latent_dim, widths[0], 4, stride=1, padding=0, bias=False),
            nn.BatchNorm2d(widths[0]),
            nn.ReLU(),
        ]
        for cin, cout in zip(widths, widths[1:], strict=False):
            layers += [
                nn.ConvTranspose2d(cin, cout, 4, stride=2, padding=1, bias=False),
                nn.BatchNorm2d(cout),
                nn.ReLU(),
            ]
        layers += [nn.ConvTranspose2d(widths[-1], out_channels, 4, stride=2, padding=1, bias=False), nn.Tanh()]
        self.net = nn.Sequential(*layers)
        self.apply(radford_init)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.net(z[:, :, None, None])  # (B, D) -> (B, D, 1, 1) -> (B, C, H, W) in [-1, 1]


class RadfordDiscriminator(nn.Module):
    """Radford et al.'s discriminator: stride-2 Conv(k4, s2, p1) layers doubling the channels (f → 2f → 4f
    → 8f at 64×64) down to 4×4, LeakyReLU(0.2), BatchNorm on all but the first; then Conv(8f → 1, k4, s1,
    p0) to one logit (the paper's sigmoid is in the loss). Weights ~ N(0, 0.02).

    Args:
        in_channels: Image channels.
        image_size: Image height and width: 4 · 2^k (64 in the paper).
        features: Channels of the first layer.
    """

    def __init__(self, in_channels: int, image_size: int, features: int = 64) -> None:
        super().__init__()
        check_positive(in_channels=in_channels, features=features)
        k = radford_blocks(image_size)
        widths = [features * 2**i for i in range(k)]  # e.g. 64, 128, 256, 512
        layers: list[nn.Module] = [
            nn.Conv2d(in_channels, widths[0], 4, stride=2, padding=1, bias=False),
            nn.LeakyReLU(0.2),
        ]
        for cin, cout in zip(widths, widths[1:], strict=False):
            layers += [
                nn.Conv2d(cin, cout, 4, stride=2, padding=1, bias=False),
                nn.BatchNorm2d(cout),
                nn.LeakyReLU(0.2),
            ]
        layers.append(nn.Conv2d(widths[-1], 1, 4, stride=1, padding=0, bias=False))
        self.net = nn.Sequential(*layers)
        self.apply(radford_init)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x).flatten()  # (B, C, H, W) -> (B, 1, 1, 1) -> (B,) logits

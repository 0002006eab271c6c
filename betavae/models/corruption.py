"""Input corruptions for denoising and super-resolution autoencoders, applied in pixel space [0, 1].

Only the model's input is corrupted; the target stays the clean image.
"""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F

from betavae.errors import ConfigError


class Corruption:
    """Base class: ``corruption(pixels (B, C, H, W) in [0, 1], generator) -> corrupted pixels``.

    Stateless, so a plain callable rather than an ``nn.Module``: nothing to train, move or checkpoint.
    """

    def __call__(self, pixels: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        raise NotImplementedError

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in vars(self).items())
        return f"{type(self).__name__}({args})"


class GaussianNoise(Corruption):
    """Additive Gaussian noise of standard deviation ``sigma`` (in pixel units), optionally clipped.

    Args:
        sigma: Noise standard deviation on the [0, 1] pixel scale.
        clip: Clip the noisy image back to [0, 1] so it stays a valid image.
    """

    def __init__(self, sigma: float = 0.2, clip: bool = True) -> None:
        if sigma < 0:
            raise ConfigError(f"sigma must be >= 0, got {sigma}")
        self.sigma = sigma
        self.clip = clip

    def __call__(self, pixels: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        noise = torch.randn(pixels.shape, generator=generator, device=pixels.device, dtype=pixels.dtype)
        noisy = pixels + self.sigma * noise
        return noisy.clamp(0, 1) if self.clip else noisy


class Masking(Corruption):
    """Dropout-style masking: each pixel (all its channels) is set to 0 with probability ``p``.

    Args:
        p: Probability of masking a pixel.
        rescale: Multiply the kept pixels by 1 / (1 - p) like ``nn.Dropout`` (off: images stay in range).
    """

    def __init__(self, p: float = 0.5, rescale: bool = False) -> None:
        if not 0 <= p < 1:
            raise ConfigError(f"p must be in [0, 1), got {p}")
        self.p = p
        self.rescale = rescale

    def __call__(self, pixels: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        b, _, h, w = pixels.shape
        keep = torch.rand((b, 1, h, w), generator=generator, device=pixels.device) >= self.p
        out = pixels * keep
        return out / (1 - self.p) if self.rescale else out


class Downsample(Corruption):
    """Super-resolution input: downsample by ``factor`` (area average) and upsample back to full size.

    Args:
        factor: Integer downsampling factor; the image size must be divisible by it.
        mode: Interpolation used to upsample back (``"bilinear"``, ``"bicubic"`` or ``"nearest"``).
    """

    def __init__(self, factor: int = 2, mode: Literal["bilinear", "bicubic", "nearest"] = "bilinear") -> None:
        if factor < 1:
            raise ConfigError(f"factor must be a positive integer, got {factor}")
        self.factor = factor
        self.mode = mode

    def __call__(self, pixels: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        h, w = pixels.shape[-2:]
        if h % self.factor or w % self.factor:
            raise ConfigError(f"image size {h}x{w} is not divisible by the downsampling factor {self.factor}")
        small = F.avg_pool2d(pixels, self.factor)
        kwargs = {} if self.mode == "nearest" else {"align_corners": False}
        return F.interpolate(small, size=(h, w), mode=self.mode, **kwargs).clamp(0, 1)

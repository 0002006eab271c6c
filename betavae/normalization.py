"""The value-range contract: models work in ImageNet-normalized space, metrics and figures in [0, 1].

One-channel rule: a grayscale image is the ITU-R BT.601 luma of an RGB one,
``L = 0.299 R + 0.587 G + 0.114 B``. The mean of ``L`` is exactly that weighted sum of the channel
means; for the standard deviation we take the same weighted sum of the channel standard deviations,
which is exact when the three channels are fully correlated (nearly so in natural images).
So 1-channel data uses mean 0.4590 and std 0.2256.
"""

from __future__ import annotations

from collections.abc import Sequence

from betavae.errors import ConfigError

IMAGENET_MEAN: tuple[float, float, float] = (0.485, 0.456, 0.406)
IMAGENET_STD: tuple[float, float, float] = (0.229, 0.224, 0.225)
LUMA_WEIGHTS: tuple[float, float, float] = (0.299, 0.587, 0.114)


def _luma(values: Sequence[float]) -> float:
    return round(sum(w * v for w, v in zip(LUMA_WEIGHTS, values, strict=True)), 4)


def imagenet_stats(channels: int) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """ImageNet mean and std for 3-channel images, and their luma combination for 1 channel."""
    if channels == 3:
        return IMAGENET_MEAN, IMAGENET_STD
    if channels == 1:
        return (_luma(IMAGENET_MEAN),), (_luma(IMAGENET_STD),)
    raise ConfigError(f"ImageNet statistics are defined for 1 or 3 channels, got {channels}; pass mean and std")


def check_stats(channels: int, mean: Sequence[float], std: Sequence[float]) -> None:
    """Raise a ``ValueError`` unless there is one mean and one positive std per channel."""
    if len(mean) != channels or len(std) != channels:
        raise ConfigError(
            f"normalization needs one value per channel: {channels} channels but mean={list(mean)}, std={list(std)}"
        )
    if any(s <= 0 for s in std):
        raise ConfigError(f"normalization std must be positive, got {list(std)}")

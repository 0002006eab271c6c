"""Feature networks for FID and KID: torch-fidelity's InceptionV3, and a stand-in for offline smoke runs."""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

INCEPTION_FEATURES = (64, 192, 768, 2048)


class InceptionFeatures(nn.Module):
    """torch-fidelity's InceptionV3 as a feature extractor for images in [0, 1].

    Images (B, C, H, W) in [0, 1], 1 or 3 channels, are rounded to uint8 (as if saved as PNG), gray is
    repeated to RGB, and torchmetrics' ``NoTrainInceptionV3`` resizes them to 299×299 with
    torch-fidelity's TensorFlow-1 bilinear interpolation (``interpolate_bilinear_2d_like_tensorflow1x``,
    ``antialias=False``), scales them by (x − 128)/128 and returns the ``feature``-dimensional features,
    (B, feature): exactly torch-fidelity's ``calculate_metrics`` features. torchmetrics' default
    ``antialias=True`` is not the reference FID's resize and changes 64-px images' features by about 15 %.

    Args:
        weights_path: The weights file (see ``locate_inception_weights``).
        feature: Feature layer: 2048 (final pool, the standard FID), 768, 192 or 64.
        source: Where the weights came from, for outputs (``InceptionWeights.source``).
    """

    def __init__(self, weights_path: str | Path, feature: int = 2048, source: str | None = None) -> None:
        super().__init__()
        from torchmetrics.image.fid import NoTrainInceptionV3

        if feature not in INCEPTION_FEATURES:
            raise ValueError(f"Inception feature must be one of {INCEPTION_FEATURES}, got {feature}")
        self.num_features = feature
        self.weights_path = str(weights_path)
        self.source = source or self.weights_path
        self.network = f"FID Inception (inception-2015-12-05, torch-fidelity's InceptionV3), {feature} features"
        self.net = NoTrainInceptionV3(
            name="inception-v3-compat",
            features_list=[str(feature)],
            feature_extractor_weights_path=self.weights_path,
            antialias=False,
        )

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        if images.dim() != 4 or images.shape[1] not in (1, 3):
            raise ValueError(f"InceptionFeatures needs (B, 1 or 3, H, W) images in [0, 1], got {tuple(images.shape)}")
        images = images.expand(-1, 3, -1, -1) if images.shape[1] == 1 else images
        return self.net((images.clamp(0, 1) * 255).round().to(torch.uint8))

    def __repr__(self) -> str:
        return f"{self.network}, TF-1 bilinear resize to 299; weights {Path(self.weights_path).name}"


class PixelFeatures(nn.Module):
    """A cheap stand-in feature network for smoke runs and tests: the mean channel average-pooled to
    ``size`` × ``size`` pixels, a fixed seeded random projection to ``num_features`` and a tanh.

    Needs no weights file and costs microseconds per image, for smoke runs and tests; its scores are not comparable with
    Inception FIDs (or with each other across ``num_features``, ``size`` and ``seed``).

    Args:
        num_features: Feature size.
        size: Pooled image side.
        seed: Seed of the projection.
    """

    def __init__(self, num_features: int = 64, size: int = 8, seed: int = 0) -> None:
        super().__init__()
        self.num_features = num_features
        self.size = size
        self.network = f"PixelFeatures (stand-in, not Inception; {size}x{size} pixels -> {num_features}, seed {seed})"
        generator = torch.Generator().manual_seed(seed)
        weight = torch.randn(num_features, size * size, generator=generator) / size  # (d, size²), unit-ish scale
        self.register_buffer("weight", weight)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        pooled = nn.functional.adaptive_avg_pool2d(images.mean(dim=1, keepdim=True), self.size)  # (B, 1, s, s)
        centred = pooled.flatten(1) * 2 - 1  # [0, 1] → [-1, 1]
        return torch.tanh(centred @ self.weight.T)  # (B, num_features)

    def __repr__(self) -> str:
        return self.network


class Precomputed(nn.Identity):
    """The 'feature network' of torchmetrics' FID/KID when features are computed beforehand."""

    def __init__(self, num_features: int) -> None:
        super().__init__()
        self.num_features = num_features

"""Reconstruction quality: PSNR and SSIM of images in [0, 1] (data range 1), the functional core of
``ReconstructionMetrics`` and ``evaluate``."""

from __future__ import annotations

from typing import Any

import torch
from torchmetrics import Metric, MetricCollection
from torchmetrics.functional.image import structural_similarity_index_measure
from torchmetrics.image import PeakSignalNoiseRatio

from betavae.errors import ConfigError


class SSIM(Metric):
    """Mean SSIM over images; each image's SSIM is its SSIM map averaged over the valid region.

    The SSIM map is torchmetrics' (Gaussian window of σ = ``sigma``, 11×11 for σ 1.5, K1 0.01, K2 0.03),
    averaged per image over the pixels whose window lies inside the image, as in Wang et al.'s reference
    code and ``skimage.metrics.structural_similarity(gaussian_weights=True, sigma=1.5,
    use_sample_covariance=False, data_range=1)``; channels are averaged like scikit-image's
    ``channel_axis``. torchmetrics' own ``StructuralSimilarityIndexMeasure`` (since 1.5,
    Lightning-AI/torchmetrics#2721) also averages the border, where its reflect padding makes both
    images look alike; on 64×64 images that border is 29 % of the pixels, so the two differ.

    States (sum and count) are summed across processes. Inputs: ``(preds, target)``, (B, C, H, W) in
    [0, data_range], H and W larger than the window.

    Args:
        sigma: Standard deviation of the Gaussian window (the standard: 1.5).
        data_range: Value range of the images (1 for [0, 1]).
    """

    higher_is_better = True
    is_differentiable = False
    full_state_update = False

    def __init__(self, sigma: float = 1.5, data_range: float = 1.0, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.sigma = float(sigma)
        self.data_range = float(data_range)
        self.radius = int(3.5 * self.sigma + 0.5)  # torchmetrics' (and scipy's truncate=3.5) window radius
        self.add_state("total", torch.tensor(0.0, dtype=torch.float64), dist_reduce_fx="sum")
        self.add_state("count", torch.tensor(0, dtype=torch.long), dist_reduce_fx="sum")

    def update(self, preds: torch.Tensor, target: torch.Tensor) -> None:
        if preds.shape != target.shape or preds.dim() != 4:
            raise ConfigError(
                f"SSIM needs preds and target of one shape (B, C, H, W), "
                f"got {tuple(preds.shape)} and {tuple(target.shape)}"
            )
        r = self.radius
        if min(preds.shape[-2:]) <= 2 * r:
            raise ConfigError(
                f"SSIM with sigma {self.sigma} needs images larger than {2 * r + 1} px, got {preds.shape}"
            )
        _, full = structural_similarity_index_measure(
            preds,
            target,
            gaussian_kernel=True,
            sigma=self.sigma,
            data_range=self.data_range,
            reduction="none",
            return_full_image=True,
        )
        valid = full[..., r:-r, r:-r]  # (B, C, H - 2r, W - 2r)
        self.total += valid.flatten(1).mean(dim=1).double().sum()
        self.count += preds.shape[0]

    def compute(self) -> torch.Tensor:
        return (self.total / self.count).float()


def reconstruction_metrics() -> MetricCollection:
    """``psnr`` (dB, the mean over images of each image's PSNR) and ``ssim`` (``SSIM``), data range 1.

    Update with ``(reconstructions, originals)`` in [0, 1], (B, C, H, W).
    """
    return MetricCollection(
        {
            "psnr": PeakSignalNoiseRatio(data_range=1.0, dim=(1, 2, 3), reduction="elementwise_mean"),
            "ssim": SSIM(sigma=1.5, data_range=1.0),
        }
    )

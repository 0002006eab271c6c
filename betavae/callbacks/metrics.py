"""Reconstruction quality: PSNR and SSIM of reconstructions from μ, on images in [0, 1] (data range 1)."""

from __future__ import annotations

from typing import Any

import lightning as L
import torch
from lightning.pytorch.callbacks import Callback
from lightning.pytorch.utilities import rank_zero_warn
from torchmetrics import Metric, MetricCollection
from torchmetrics.functional.image import structural_similarity_index_measure
from torchmetrics.image import PeakSignalNoiseRatio

from betavae.errors import ConfigError
from betavae.model_api import api_problem, evaluating, model_input, with_label


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


class ReconstructionMetrics(Callback):
    """``val/psnr`` and ``val/ssim`` (and ``test/…``) of reconstructions from μ, in pixel space [0, 1].

    Every validation (and test) batch is reconstructed with ``model.reconstruct`` (for VAEs: decoding μ;
    conditional models get the batch's ``"label"``), and both the batch and its reconstruction go
    through ``model.to_pixels`` (denormalize, clamp to [0, 1]) before scoring with data range 1 (see
    ``reconstruction_metrics``). PSNR is the mean over images of each image's PSNR, SSIM the mean over
    images of each image's mean SSIM.

    Models that corrupt their input (denoising, masking, super-resolution: ``model.corrupt(x)`` is not
    ``x``) are scored on their task: the reconstruction of the corrupted batch against the clean one,
    each image's corruption seeded by its dataset index (as in the model's validation loss), so every
    epoch, batching and number of processes sees the same corrupted images. The corrupted
    input's own scores are logged as ``val/psnr_input`` and ``val/ssim_input``: the baseline the model
    has to beat.

    The scores are torchmetrics objects whose states are gathered across processes under DDP, so the
    logged value is the score of every validation image, not a mean of per-process scores (Lightning's
    ``DistributedSampler`` may repeat a few images to even out the shards). Models without
    ``reconstruct`` / ``to_pixels`` get one warning and no scores. The model's train/eval mode and the
    RNG state are left as they were.
    """

    def __init__(self) -> None:
        self.metrics: MetricCollection | None = None
        self.input_metrics: MetricCollection | None = None  # corrupted input vs clean (denoisers)
        self.disabled: str | None = None

    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        problem = api_problem(pl_module, reconstruct=1, to_pixels=1)
        if problem and not self.disabled:
            rank_zero_warn(f"ReconstructionMetrics: {problem}; no val/psnr or val/ssim this run.")
        self.disabled = problem
        if self.metrics is None:
            self.metrics = reconstruction_metrics()
            self.input_metrics = reconstruction_metrics()

    # ----------------------------------------------------------------- shared by validation and test
    def _start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        for metrics in (self.metrics, self.input_metrics):
            if metrics is not None:
                metrics.reset()
                metrics.to(pl_module.device)

    def _update(self, trainer: L.Trainer, pl_module: L.LightningModule, batch: Any, batch_idx: int) -> None:
        if self.disabled or self.metrics is None or trainer.sanity_checking:
            return
        x = batch["image"]  # (B, C, H, W), normalized
        with evaluating(pl_module):
            x_in = model_input(pl_module, batch)  # x itself unless the model corrupts its input
            x_hat = with_label(pl_module.reconstruct, x_in, label=batch.get("label"))
            clean = pl_module.to_pixels(x)
            self.metrics.update(pl_module.to_pixels(x_hat), clean)
            if x_in is not x:
                self.input_metrics.update(pl_module.to_pixels(x_in), clean)

    def _log(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        if self.disabled or self.metrics is None or trainer.sanity_checking or not self.metrics["ssim"].update_called:
            return
        values = self.metrics.compute()  # gathers the states of every process: the same values on each rank
        if self.input_metrics["ssim"].update_called:
            values.update({f"{k}_input": v for k, v in self.input_metrics.compute().items()})
        for name, value in values.items():
            # sync_dist only averages identical numbers; it keeps Lightning's distributed-logging check quiet
            pl_module.log(f"{stage}/{name}", value, on_step=False, on_epoch=True, sync_dist=True)
        self.metrics.reset()
        self.input_metrics.reset()

    # ----------------------------------------------------------------- hooks
    def on_validation_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._start(trainer, pl_module)

    def on_validation_batch_end(
        self,
        trainer: L.Trainer,
        pl_module: L.LightningModule,
        outputs: Any,
        batch: Any,
        batch_idx: int,
        dataloader_idx: int = 0,
    ) -> None:
        self._update(trainer, pl_module, batch, batch_idx)

    def on_validation_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._log(trainer, pl_module, "val")

    def on_test_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._start(trainer, pl_module)

    def on_test_batch_end(
        self,
        trainer: L.Trainer,
        pl_module: L.LightningModule,
        outputs: Any,
        batch: Any,
        batch_idx: int,
        dataloader_idx: int = 0,
    ) -> None:
        self._update(trainer, pl_module, batch, batch_idx)

    def on_test_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._log(trainer, pl_module, "test")

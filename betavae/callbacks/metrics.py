"""Reconstruction quality: PSNR and SSIM of reconstructions from μ, on images in [0, 1] (data range 1).

The hook over ``betavae.scoring.reconstruction`` (the ``SSIM`` Metric and ``reconstruction_metrics``).
"""

from __future__ import annotations

from typing import Any

import lightning as L
from lightning.pytorch.callbacks import Callback
from lightning.pytorch.utilities import rank_zero_warn
from torchmetrics import MetricCollection

from betavae.model_api import api_problem, evaluating, model_input, with_label
from betavae.scoring.reconstruction import reconstruction_metrics


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

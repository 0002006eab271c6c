"""What callbacks show on the loggers: image panels and histograms on W&B and TensorBoard."""

from __future__ import annotations

import lightning as L
import torch
from lightning.pytorch.loggers import TensorBoardLogger, WandbLogger


def log_image(trainer: L.Trainer, key: str, image: torch.Tensor, caption: str | None = None) -> None:
    """Show a [0, 1] image (C, H, W) on every W&B or TensorBoard logger of ``trainer`` at its global step."""
    for logger in trainer.loggers:
        if isinstance(logger, WandbLogger):
            array = (image.nan_to_num(0.0).clamp(0, 1) * 255).round().byte().permute(1, 2, 0).cpu().numpy()
            logger.log_image(key=key, images=[array], step=trainer.global_step, caption=[caption or key])
        elif isinstance(logger, TensorBoardLogger):
            logger.experiment.add_image(key, image.nan_to_num(0.0).clamp(0, 1).cpu(), global_step=trainer.global_step)


def log_histogram(trainer: L.Trainer, key: str, values: torch.Tensor) -> None:
    """Show the distribution of ``values`` (1-d) on every W&B or TensorBoard logger at the global step.

    Non-finite values (a diverging run) are left out, and nothing is shown when none is finite: W&B's and
    TensorBoard's histograms refuse NaN and would crash the run in a callback.
    """
    values = values.detach().float().cpu().flatten()
    values = values[torch.isfinite(values)]
    if values.numel() == 0:
        return
    for logger in trainer.loggers:
        if isinstance(logger, WandbLogger):
            import wandb

            logger.log_metrics({key: wandb.Histogram(values.numpy())}, step=trainer.global_step)
        elif isinstance(logger, TensorBoardLogger):
            logger.experiment.add_histogram(key, values, global_step=trainer.global_step)

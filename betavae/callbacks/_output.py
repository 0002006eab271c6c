"""Where callbacks write: the run directory on disk, and image panels on the loggers that show them."""

from __future__ import annotations

import weakref
from pathlib import Path

import lightning as L
import torch
from lightning.pytorch.loggers import TensorBoardLogger, WandbLogger

_RUN_DIRS: weakref.WeakKeyDictionary[L.Trainer, Path] = weakref.WeakKeyDictionary()


def run_dir(trainer: L.Trainer) -> Path:
    """The run directory: the first logger's versioned folder, else the trainer's ``default_root_dir``.

    ``trainer.log_dir`` is a collective under DDP (rank zero broadcasts its folder), so the first call
    must happen on every process, e.g. in a callback's ``setup``; later calls, on any rank alone, get the
    remembered folder.
    """
    if trainer not in _RUN_DIRS:
        _RUN_DIRS[trainer] = Path(trainer.log_dir or trainer.default_root_dir)
    return _RUN_DIRS[trainer]


def log_image(trainer: L.Trainer, key: str, image: torch.Tensor, caption: str | None = None) -> None:
    """Show a [0, 1] image (C, H, W) on every W&B or TensorBoard logger of ``trainer`` at its global step."""
    for logger in trainer.loggers:
        if isinstance(logger, WandbLogger):
            array = (image.clamp(0, 1) * 255).round().byte().permute(1, 2, 0).cpu().numpy()
            logger.log_image(key=key, images=[array], step=trainer.global_step, caption=[caption or key])
        elif isinstance(logger, TensorBoardLogger):
            logger.experiment.add_image(key, image.clamp(0, 1).cpu(), global_step=trainer.global_step)


def log_histogram(trainer: L.Trainer, key: str, values: torch.Tensor) -> None:
    """Show the distribution of ``values`` (1-d) on every W&B or TensorBoard logger at the global step."""
    values = values.detach().float().cpu()
    for logger in trainer.loggers:
        if isinstance(logger, WandbLogger):
            import wandb

            logger.log_metrics({key: wandb.Histogram(values.numpy())}, step=trainer.global_step)
        elif isinstance(logger, TensorBoardLogger):
            logger.experiment.add_histogram(key, values, global_step=trainer.global_step)

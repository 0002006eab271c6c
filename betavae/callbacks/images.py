"""Reconstruction and sample grids of the model being trained, as PNG files and logger images."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import lightning as L
import torch
from lightning.pytorch.callbacks import Callback
from lightning.pytorch.utilities import rank_zero_warn

from betavae.callbacks._common import due
from betavae.callbacks._output import log_image
from betavae.errors import ConfigError
from betavae.model_api import api_problem, evaluating, model_input, with_label
from betavae.plotting import image_rows, save_png, square_grid
from betavae.run_folders import trainer_run_dir


class ImageGrids(Callback):
    """Every ``every_n_epochs`` validation epochs (and after the last), on rank zero:

    - ``images/reconstructions_epoch=EEE.png``: the first ``num_images`` validation images (top row)
      above their reconstructions from μ (bottom row); for models that corrupt their input (denoising,
      super-resolution) the corrupted input is shown between them and is what gets reconstructed;
    - ``images/samples_epoch=EEE.png``: ``num_samples`` decodings of fixed draws z ~ N(0, I)
      (for models with a ``sample`` method), the same z every time so epochs can be compared.

    Images are converted with the model's ``to_pixels`` (denormalized, [0, 1]). The same grids go to
    W&B / TensorBoard as ``val/reconstructions`` and ``val/samples`` when such a logger is attached.
    A model without ``reconstruct`` (a GAN) gets sample grids only, one without ``sample`` reconstruction
    grids only, each with one warning.
    The model's train/eval mode and the RNG state are left as they were. Only rank zero draws and logs.

    Args:
        every_n_epochs: Period in validation epochs.
        num_images: Validation images to reconstruct (taken from the first validation batch).
        num_samples: Prior samples to decode.
        seed: Seed of the fixed prior draws.
    """

    def __init__(self, every_n_epochs: int = 1, num_images: int = 8, num_samples: int = 64, seed: int = 0) -> None:
        if every_n_epochs < 1:
            raise ConfigError(f"every_n_epochs must be >= 1, got {every_n_epochs}")
        self.every_n_epochs = every_n_epochs
        self.num_images = num_images
        self.num_samples = num_samples
        self.seed = seed
        self._inputs: torch.Tensor | None = None
        self._labels: torch.Tensor | None = None
        self._index: dict[str, torch.Tensor] = {}
        self._no_samples: str | None = None
        self._no_reconstructions: str | None = None
        self._run_dir: Path | None = None

    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        self._run_dir = trainer_run_dir(trainer)  # on every rank: trainer.log_dir is a collective under DDP
        problem = api_problem(pl_module, sample=1) if self.num_samples > 0 else None
        if problem and problem != self._no_samples:
            rank_zero_warn(f"ImageGrids: {problem}; reconstruction grids only, no sample grids.")
        self._no_samples = problem
        problem = api_problem(pl_module, reconstruct=1, to_pixels=1)
        if problem and problem != self._no_reconstructions:
            rank_zero_warn(f"ImageGrids: {problem}; sample grids only, no reconstruction grids.")
        self._no_reconstructions = problem

    def on_validation_batch_end(
        self,
        trainer: L.Trainer,
        pl_module: L.LightningModule,
        outputs: Any,
        batch: Any,
        batch_idx: int,
        dataloader_idx: int = 0,
    ) -> None:
        if batch_idx == 0 and dataloader_idx == 0 and trainer.is_global_zero:
            self._inputs = batch["image"][: self.num_images].detach()
            labels = batch.get("label")
            self._labels = labels[: self.num_images] if isinstance(labels, torch.Tensor) else None
            index = batch.get("index")
            self._index = {"index": index[: self.num_images]} if isinstance(index, torch.Tensor) else {}

    def on_validation_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if (
            trainer.sanity_checking
            or not trainer.is_global_zero
            or self._inputs is None
            or not due(trainer, self.every_n_epochs)
        ):
            return
        with evaluating(pl_module):
            grids = {} if self._no_reconstructions else {"reconstructions": self._reconstructions(pl_module)}
            if self.num_samples > 0 and not self._no_samples:
                generator = torch.Generator(device=pl_module.device).manual_seed(self.seed)
                samples = pl_module.sample(self.num_samples, generator=generator)
                grids["samples"] = square_grid(pl_module.to_pixels(samples))
        folder = (self._run_dir or trainer_run_dir(trainer)) / "images"
        for name, grid in grids.items():
            save_png(grid, folder / f"{name}_epoch={trainer.current_epoch:03d}.png")
            log_image(trainer, f"val/{name}", grid, caption=f"epoch {trainer.current_epoch}")

    def _reconstructions(self, pl_module: L.LightningModule) -> torch.Tensor:
        x = self._inputs.to(pl_module.device)
        labels = self._labels.to(pl_module.device) if self._labels is not None else None
        x_in = model_input(pl_module, {"image": x, **self._index})  # x itself unless the model corrupts its input
        x_hat = with_label(pl_module.reconstruct, x_in, label=labels)
        rows = [x, x_in, x_hat] if x_in is not x else [x, x_hat]
        return image_rows([pl_module.to_pixels(row) for row in rows])

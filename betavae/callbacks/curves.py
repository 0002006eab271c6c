"""Loss curves of the run as a PNG, from any logger setup (or none)."""

from __future__ import annotations

from typing import Any

import lightning as L
from lightning.pytorch.callbacks import Callback

from betavae.plotting import plot_curves
from betavae.run_folders import trainer_run_dir


class LossCurves(Callback):
    """Draws ``images/loss_curves.png``: one panel per loss part (loss, recon, kl, ...), train and val.

    Training values are recorded every ``trainer.log_every_n_steps`` steps and validation values
    after each validation epoch; the figure is redrawn after every validation epoch and at the end
    of training, on rank zero. The history is kept in the checkpoint, so a resumed run draws the
    whole curve.

    Args:
        parts: Loss parts to draw; ``None`` draws every part that was logged.
    """

    def __init__(self, parts: list[str] | None = None) -> None:
        self.parts = parts
        self.history: dict[str, list[tuple[int, float]]] = {}

    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        trainer_run_dir(trainer)  # on every rank: trainer.log_dir is a collective under DDP

    def _record(self, trainer: L.Trainer, prefix: str) -> None:
        for key, value in trainer.callback_metrics.items():
            if key.startswith(prefix) and value.numel() == 1:
                self.history.setdefault(key, []).append((trainer.global_step, float(value)))

    def on_train_batch_end(
        self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        step = trainer.global_step  # already counts this batch's update
        if trainer.is_global_zero and (step == 1 or step % trainer.log_every_n_steps == 0):
            self._record(trainer, "train/")

    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        # not on_validation_epoch_end: the epoch means reach callback_metrics only after it
        if trainer.sanity_checking or not trainer.is_global_zero or trainer.state.fn != "fit":
            return
        self._record(trainer, "val/")
        self.draw(trainer)

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.is_global_zero:
            self.draw(trainer)

    def draw(self, trainer: L.Trainer) -> None:
        if self.history:
            plot_curves(self.history, trainer_run_dir(trainer) / "images" / "loss_curves.png", self.parts)

    def state_dict(self) -> dict[str, Any]:
        return {"history": {k: list(v) for k, v in self.history.items()}}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.history = {k: [tuple(p) for p in v] for k, v in state_dict.get("history", {}).items()}

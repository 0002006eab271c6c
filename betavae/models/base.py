"""The base LightningModule every autoencoder variant shares.

It owns what does not depend on the variant: the value-range contract (``normalize`` / ``to_pixels``),
the train/val/test steps that log each loss part as ``train/…``, ``val/…``, ``test/…``, the guard that
stops a run on a non-finite loss, and the study's optimizer (Adam + ExponentialLR per epoch). A variant
implements ``reconstruct`` and ``loss_parts``; a generative one also ``sample``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import lightning as L
import torch

from betavae.normalization import check_stats, imagenet_stats


class NonFiniteLossError(RuntimeError):
    """Raised when a training loss is NaN or infinite; the step's update is not applied."""


class AutoencoderModule(L.LightningModule):
    """Shared training, logging and pixel conversion for autoencoders.

    Batches are dicts with an ``"image"`` tensor (B, C, H, W) in normalized space, and optionally
    ``"label"``, ``"factors"`` and ``"index"``.

    Args:
        in_channels: Image channels. Linked from the data module by the CLI.
        image_size: Image height and width. Linked from the data module by the CLI.
        mean: Per-channel normalization mean the data was normalized with; ``None`` means the
            ImageNet statistics for ``in_channels`` (see ``betavae.normalization``). Linked by the CLI.
        std: Per-channel normalization std, as ``mean``. Linked by the CLI.
        lr: Adam learning rate (the study: 0.005).
        weight_decay: Adam weight decay.
        scheduler_gamma: Multiplicative learning-rate decay per epoch (ExponentialLR; the study: 0.95);
            ``None`` keeps the rate constant.
    """

    def __init__(
        self,
        in_channels: int = 3,
        image_size: int = 64,
        mean: Sequence[float] | None = None,
        std: Sequence[float] | None = None,
        lr: float = 0.005,
        weight_decay: float = 0.0,
        scheduler_gamma: float | None = 0.95,
    ) -> None:
        super().__init__()
        self.save_hyperparameters()
        default_mean, default_std = imagenet_stats(in_channels) if mean is None or std is None else (mean, std)
        mean = tuple(float(m) for m in (default_mean if mean is None else mean))
        std = tuple(float(s) for s in (default_std if std is None else std))
        check_stats(in_channels, mean, std)
        self.in_channels = in_channels
        self.image_size = image_size
        self.register_buffer("pixel_mean", torch.tensor(mean).view(1, -1, 1, 1), persistent=False)
        self.register_buffer("pixel_std", torch.tensor(std).view(1, -1, 1, 1), persistent=False)

    # ----------------------------------------------------------------- value range
    def normalize(self, pixels: torch.Tensor) -> torch.Tensor:
        """Images in [0, 1] → the model's normalized space."""
        return (pixels - self.pixel_mean) / self.pixel_std

    def to_pixels(self, x: torch.Tensor) -> torch.Tensor:
        """Normalized images (inputs or outputs) → [0, 1], clamped. Everything shown or measured goes here."""
        return (x * self.pixel_std + self.pixel_mean).clamp(0.0, 1.0)

    # ----------------------------------------------------------------- the variant's part
    def reconstruct(self, x: torch.Tensor) -> torch.Tensor:
        """The deterministic reconstruction of ``x`` (normalized space in and out)."""
        raise NotImplementedError

    def loss_parts(self, batch: dict[str, Any]) -> dict[str, torch.Tensor]:
        """The loss and its parts for one batch; must contain ``"loss"`` (and usually ``"recon"``)."""
        raise NotImplementedError

    # ----------------------------------------------------------------- steps
    def training_step(self, batch: dict[str, Any], batch_idx: int) -> torch.Tensor:
        parts = self.loss_parts(batch)
        self._stop_if_not_finite(parts, batch_idx)
        self._log_parts("train", parts, batch)
        return parts["loss"]

    def validation_step(self, batch: dict[str, Any], batch_idx: int) -> None:
        self._log_parts("val", self.loss_parts(batch), batch)

    def test_step(self, batch: dict[str, Any], batch_idx: int) -> None:
        self._log_parts("test", self.loss_parts(batch), batch)

    def predict_step(self, batch: dict[str, Any], batch_idx: int) -> dict[str, torch.Tensor]:
        """Per-image reconstruction error: mean squared error in pixel space [0, 1]."""
        x = batch["image"]
        x_hat = self.reconstruct(x)
        mse = (self.to_pixels(x_hat) - self.to_pixels(x)).pow(2).flatten(1).mean(dim=1)
        out = {"mse": mse}
        if "index" in batch:
            out["index"] = batch["index"]
        return out

    def _log_parts(self, stage: str, parts: dict[str, torch.Tensor], batch: dict[str, Any]) -> None:
        train = stage == "train"
        for name, value in parts.items():
            self.log(
                f"{stage}/{name}",
                value.detach(),
                prog_bar=name == "loss",
                on_step=train,
                on_epoch=not train,
                sync_dist=not train,  # validation/test: epoch means over every rank's batches
                batch_size=batch["image"].shape[0],
            )

    def _stop_if_not_finite(self, parts: dict[str, torch.Tensor], batch_idx: int) -> None:
        finite = bool(torch.isfinite(parts["loss"]).all())
        if self._trainer is not None:  # every rank stops together under DDP
            finite = self.trainer.strategy.reduce_boolean_decision(finite, all=True)
        if finite:
            return
        values = ", ".join(f"{k}={v.detach().float().mean().item():.6g}" for k, v in parts.items())
        last = None
        if self._trainer is not None and self.trainer.checkpoint_callback is not None:
            last = getattr(self.trainer.checkpoint_callback, "last_model_path", None) or None
        raise NonFiniteLossError(
            f"non-finite training loss at epoch {self.current_epoch}, global step {self.global_step} "
            f"(batch {batch_idx}): {values}. The run stopped before applying this step's update. "
            + (f"The last good checkpoint is {last}." if last else "No checkpoint had been written yet.")
            + " Try a lower learning rate (model.init_args.lr) or check the data for bad values."
        )

    # ----------------------------------------------------------------- optimization
    def configure_optimizers(self) -> Any:
        optimizer = torch.optim.Adam(self.parameters(), lr=self.hparams.lr, weight_decay=self.hparams.weight_decay)
        if self.hparams.scheduler_gamma is None:
            return optimizer
        scheduler = torch.optim.lr_scheduler.ExponentialLR(optimizer, gamma=self.hparams.scheduler_gamma)
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "epoch"}}

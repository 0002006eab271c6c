"""The base LightningModule every autoencoder variant shares.

It owns what does not depend on the variant: the value-range contract (``normalize`` / ``to_pixels``), the
reconstruction likelihood and its reduction, the train/val/test steps that log each loss part as ``train/…``,
``val/…``, ``test/…``, the guard that stops a run on a non-finite loss, and the optimizer and schedule chosen by
class path (``betavae.models.optim``; by default the study's Adam + ExponentialLR per epoch). A variant implements
``encode``, ``decode``, ``reconstruct``, ``embed`` and ``loss_parts``; a generative one also ``sample``. Every
method that takes images also takes an optional ``label``, which unconditional models ignore, so callers never need
to know which is which.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Literal

import lightning as L
import torch
import torch.nn.functional as F
from lightning.pytorch.cli import LRSchedulerCallable, OptimizerCallable

from betavae.errors import BetaVAEError, ConfigError
from betavae.models.optim import (
    STUDY_LR_SCHEDULER,
    STUDY_OPTIMIZER,
    build_optimizer,
    build_scheduler,
    scheduler_config,
)
from betavae.normalization import check_stats, imagenet_stats


class NonFiniteLossError(BetaVAEError, RuntimeError):
    """Raised when a training or validation loss is NaN or infinite; a training step's update is not applied."""


def check_non_negative(**weights: float | None) -> None:
    """Refuse a negative loss weight (β, kld_weight, γ, λ, ...): it would reward the very term it weights.

    Raises:
        ConfigError: names the first negative weight.
    """
    for name, value in weights.items():
        if value is not None and float(value) < 0:
            raise ConfigError(f"{name} must be >= 0 (a loss weight), got {value}")


def attached_trainer(module: L.LightningModule) -> L.Trainer | None:
    """The trainer ``module`` is attached to, or ``None`` (a module used on its own)."""
    try:
        return module.trainer
    except RuntimeError:
        return None


def non_finite_message(module: L.LightningModule, parts: dict[str, torch.Tensor], batch_idx: int, stage: str) -> str:
    """What stopped the run: the stage, epoch, step, batch, every loss part, and the last good checkpoint."""
    values = ", ".join(f"{k}={v.detach().float().mean().item():.6g}" for k, v in parts.items())
    trainer = attached_trainer(module)
    epoch, step = (module.current_epoch, module.global_step) if trainer is not None else (0, 0)
    last = None
    if trainer is not None and trainer.checkpoint_callback is not None:
        last = getattr(trainer.checkpoint_callback, "last_model_path", None) or None
    what = (
        "The run stopped before applying this step's update."
        if stage == "training"
        else f"The weights of global step {step} give it; they were not saved."
    )
    return (
        f"non-finite {stage} loss at epoch {epoch}, global step {step} (batch {batch_idx}): {values}. {what} "
        + (f"The last good checkpoint is {last}." if last else "No checkpoint had been written yet.")
        + " Try a lower learning rate (model.init_args.optimizer.init_args.lr) or check the data for bad values."
    )


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
        optimizer: The optimizer, by class path with its ``init_args`` (``torch.optim.AdamW``, ...) or a callable
            taking the parameters; the default is the study's Adam (lr 0.005, no weight decay). The learning rate
            is ``optimizer.init_args.lr``.
        lr_scheduler: The learning-rate schedule, by class path, stepped once per epoch (a ``ReduceLROnPlateau``
            watches ``val/loss``); ``None`` keeps the rate constant. The default is the study's ExponentialLR
            (gamma 0.95).
        likelihood: Reconstruction term. ``"mse"``: squared error between the output and the input in
            normalized space (a Gaussian likelihood; the study's). ``"bce"``: binary cross-entropy
            between the decoder's logits, read as Bernoulli probabilities of the pixel intensities in
            [0, 1], and the input's pixels (for near-binary images such as MNIST or shapes).
        reduction: How ``recon`` is reduced. ``"mean"``: the mean over every pixel, channel and image
            (``F.mse_loss``'s default; the study's, and the scale its ``kld_weight`` is tuned for).
            ``"sum"``: summed over the pixels and channels of each image, then averaged over the batch
            (the ELBO's scale, where β = 1 and ``kld_weight`` = 1 give the true negative ELBO).
        output_activation: For ``"mse"``: ``"identity"`` (a linear output in normalized space) or
            ``"sigmoid"`` (the decoder predicts pixels through a sigmoid, then they are normalized).
            ``"bce"`` always uses the sigmoid.
        compile: Compile the model's networks with ``torch.compile`` (in place, so checkpoints keep
            their keys) when training or evaluation starts. Scores stay those of the eager model
            within float tolerance (``scripts/benchmark_scaling.py`` measures speed and agreement).
        channels_last: Keep the weights in the ``channels_last`` memory format (NHWC), which cuDNN's
            convolutions (tensor cores, mixed precision) run faster on; the activations follow. Numerics
            are the same up to float reordering (``scripts/benchmark_scaling.py --channels-last``).
    """

    def __init__(
        self,
        in_channels: int = 3,
        image_size: int = 64,
        mean: Sequence[float] | None = None,
        std: Sequence[float] | None = None,
        optimizer: OptimizerCallable = STUDY_OPTIMIZER,
        lr_scheduler: LRSchedulerCallable | None = STUDY_LR_SCHEDULER,
        likelihood: Literal["mse", "bce"] = "mse",
        reduction: Literal["mean", "sum"] = "mean",
        output_activation: Literal["identity", "sigmoid"] = "identity",
        compile: bool = False,
        channels_last: bool = False,
    ) -> None:
        super().__init__()
        self.save_hyperparameters()
        self.optimizer = optimizer
        self.lr_scheduler = lr_scheduler
        for name, value, allowed in (
            ("likelihood", likelihood, ("mse", "bce")),
            ("reduction", reduction, ("mean", "sum")),
            ("output_activation", output_activation, ("identity", "sigmoid")),
        ):
            if value not in allowed:
                raise ConfigError(f"{name} must be one of {allowed}, got {value!r}")
        default_mean, default_std = imagenet_stats(in_channels) if mean is None or std is None else (mean, std)
        mean = tuple(float(m) for m in (default_mean if mean is None else mean))
        std = tuple(float(s) for s in (default_std if std is None else std))
        check_stats(in_channels, mean, std)
        self.in_channels = in_channels
        self.image_size = image_size
        self.register_buffer("pixel_mean", torch.tensor(mean).view(1, -1, 1, 1), persistent=False)
        self.register_buffer("pixel_std", torch.tensor(std).view(1, -1, 1, 1), persistent=False)

    def configure_model(self) -> None:
        """With ``channels_last``: weights in NHWC; with ``compile``: ``torch.compile`` every child network in
        place (once)."""
        if self.hparams.get("channels_last"):
            self.to(memory_format=torch.channels_last)
        if self.hparams.get("compile") and not getattr(self, "_compiled", False):
            for child in self.children():
                child.compile()
            self._compiled = True

    # ----------------------------------------------------------------- value range
    def normalize(self, pixels: torch.Tensor) -> torch.Tensor:
        """Images in [0, 1] → the model's normalized space."""
        return (pixels - self.pixel_mean) / self.pixel_std

    def to_pixels(self, x: torch.Tensor) -> torch.Tensor:
        """Normalized images (inputs or outputs) → [0, 1], clamped. Everything shown or measured goes here."""
        return (x * self.pixel_std + self.pixel_mean).clamp(0.0, 1.0)

    # ----------------------------------------------------------------- output and reconstruction term
    def output_to_image(self, raw: torch.Tensor) -> torch.Tensor:
        """The decoder's raw output → an image in normalized space (the model's output space)."""
        if self.hparams.likelihood == "bce" or self.hparams.output_activation == "sigmoid":
            return self.normalize(torch.sigmoid(raw))
        return raw

    def reconstruction_loss(self, raw: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        """``recon`` between the decoder's raw output and the normalized target ``x`` (see Args)."""
        if self.hparams.likelihood == "bce":
            per_element = F.binary_cross_entropy_with_logits(raw, self.to_pixels(x), reduction="none")
        else:
            per_element = (self.output_to_image(raw) - x).pow(2)
        if self.hparams.reduction == "sum":
            return per_element.flatten(1).sum(dim=1).mean()
        return per_element.mean()

    # ----------------------------------------------------------------- the variant's part
    def corrupt(self, x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """The input the model learns to reconstruct ``x`` from; ``x`` itself unless a variant corrupts it."""
        return x

    @property
    def corrupts_input(self) -> bool:
        """Whether ``corrupt`` changes the input (denoising, masking, super-resolution models)."""
        return False

    def corrupt_seeded(self, x: torch.Tensor, seeds: Sequence[int]) -> torch.Tensor:
        """``corrupt(x)`` with image ``i``'s corruption seeded by ``seeds[i]`` (its dataset index), so a
        validation image is corrupted the same way whatever the batching, order or number of processes;
        ``x`` itself (the same object) for models that do not corrupt their input."""
        if not self.corrupts_input:
            return x
        generator = torch.Generator(device=x.device)
        return torch.cat([self.corrupt(x[i : i + 1], generator.manual_seed(int(s))) for i, s in enumerate(seeds)])

    def reconstruct(self, x: torch.Tensor, label: torch.Tensor | None = None) -> torch.Tensor:
        """The deterministic reconstruction of ``x`` (normalized space in and out)."""
        raise NotImplementedError

    def embed(self, x: torch.Tensor, label: torch.Tensor | None = None) -> torch.Tensor:
        """One code vector per image, (B, D): μ for VAEs, the flattened code for autoencoders."""
        raise NotImplementedError

    def loss_parts(self, batch: dict[str, Any]) -> dict[str, torch.Tensor]:
        """The loss and its parts for one batch; must contain ``"loss"`` (and usually ``"recon"``)."""
        raise NotImplementedError

    # ----------------------------------------------------------------- steps
    def training_step(self, batch: dict[str, Any], batch_idx: int) -> torch.Tensor:
        parts = self.loss_parts(batch)
        self._stop_if_not_finite(parts, batch_idx, "training")
        self._log_parts("train", parts, batch)
        return parts["loss"]

    def validation_step(self, batch: dict[str, Any], batch_idx: int) -> None:
        parts = self.loss_parts(batch)
        self._stop_if_not_finite(parts, batch_idx, "validation")
        self._log_parts("val", parts, batch)

    def test_step(self, batch: dict[str, Any], batch_idx: int) -> None:
        self._log_parts("test", self.loss_parts(batch), batch)

    def predict_step(self, batch: dict[str, Any], batch_idx: int) -> dict[str, torch.Tensor]:
        """Per image: ``"mse"``, the reconstruction error in pixel space [0, 1] (mean over pixels and
        channels), ``"code"`` (``embed``), and the batch's ``"index"`` / ``"label"`` when present."""
        x, label = batch["image"], batch.get("label")
        mse = (self.to_pixels(self.reconstruct(x, label)) - self.to_pixels(x)).pow(2).flatten(1).mean(dim=1)
        out = {"mse": mse, "code": self.embed(x, label)}
        out.update({k: batch[k] for k in ("index", "label") if k in batch})
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

    def _stop_if_not_finite(
        self,
        parts: dict[str, torch.Tensor],
        batch_idx: int,
        stage: str = "training",
        keys: Sequence[str] = ("loss",),
    ) -> None:
        """Raise ``NonFiniteLossError`` when any of the ``keys`` parts is NaN or infinite on any process (every
        rank stops together under DDP): before the update in training, before any callback sees the batch in
        validation."""
        finite = bool(torch.cat([parts[k].detach().float().flatten() for k in keys]).isfinite().all())
        trainer = attached_trainer(self)
        if trainer is not None:  # a collective: every rank stops together under DDP
            finite = trainer.strategy.reduce_boolean_decision(finite, all=True)
        if finite:
            return
        raise NonFiniteLossError(non_finite_message(self, parts, batch_idx, stage))

    # ----------------------------------------------------------------- optimization
    def configure_optimizers(self) -> Any:
        """``optimizer`` over every parameter, with ``lr_scheduler`` stepped once per epoch when there is one."""
        optimizer = build_optimizer(self.optimizer, self.parameters())
        scheduler = build_scheduler(self.lr_scheduler, optimizer)
        if scheduler is None:
            return optimizer
        return {"optimizer": optimizer, "lr_scheduler": scheduler_config(scheduler)}

    # ----------------------------------------------------------------- comparisons
    @classmethod
    def comparison_beta(cls, hparams: Mapping[str, Any]) -> float | None:
        """The beta a run of this class with ``hparams`` is compared by in tables and dashboards; ``None`` for a
        model without a KL term (deterministic autoencoders, GANs). Each model class declares its own rule."""
        return None

    @property
    def model_beta(self) -> float | None:
        """``comparison_beta`` of this model's hyperparameters."""
        return type(self).comparison_beta(self.hparams)

"""DCGAN: the baseline the study's introduction compares β-VAEs with (Goodfellow et al. 2014; Radford et al. 2016).

A generator G maps codes z ~ N(0, I) to images and a discriminator D tells real images from G's, trained in
turn with Lightning's manual optimization. It shares the autoencoders' value-range contract and callbacks:
``sample(n)`` returns normalized images like a VAE's, so FID/KID and the sample grids work unchanged.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import torch
import torch.nn.functional as F
from lightning.pytorch.cli import LRSchedulerCallable, OptimizerCallable
from torch import nn

from betavae.errors import ConfigError
from betavae.models.base import AutoencoderModule
from betavae.models.optim import build_optimizer, build_scheduler, scheduler_config, step_schedulers
from betavae.models.vae import image_noise

#: builds a generator from (latent_dim, channels, image_size); in YAML a class path with its other init_args
GeneratorFactory = Callable[[int, int, int], nn.Module]
#: builds a discriminator from (channels, image_size)
DiscriminatorFactory = Callable[[int, int], nn.Module]
#: Radford et al.'s optimizer, for each network: Adam, lr 2e-4, beta1 0.5. (The chapter's, for Fashion-MNIST, is
#: Keras' RMSprop: ``torch.optim.RMSprop`` with lr 1e-3, alpha 0.9, eps 1e-7; configs/dcgan_fashion_mnist.yaml.)
RADFORD_OPTIMIZER: Mapping[str, Any] = {
    "class_path": "torch.optim.Adam",
    "init_args": {"lr": 2e-4, "betas": (0.5, 0.999)},
}


class DCGAN(AutoencoderModule):
    """A GAN with convolutional generator and discriminator, trained with the non-saturating loss.

    Each training batch makes two updates (Lightning's manual optimization, the generator's output
    reused, as in the PyTorch DCGAN example):

    1. discriminator: ``d_loss`` = ½ [BCE(D(x), 1) + BCE(D(G(z)), 0)] on the real batch x and as many fakes
       (the chapter's loss on its half-real, half-fake batch), G held fixed;
    2. generator: ``g_loss`` = BCE(D(G(z)), 1), the non-saturating loss of Goodfellow et al., through the
       updated D with D's weights frozen.

    Logged every step: ``train/d_loss``, ``train/g_loss``, ``train/d_real`` (mean D(x), the probability D
    gives real images) and ``train/d_fake`` (mean D(G(z))). The trainer's ``global_step`` counts both
    updates, so it grows by 2 per batch. Each loss is checked before the update it drives: a non-finite one
    stops the run there (``NonFiniteLossError``), as for the autoencoders. Under DDP each update leaves the
    other network without gradients, which DDP accepts only with ``--trainer.strategy
    ddp_find_unused_parameters_true`` (plain ``ddp`` stops with Lightning's error saying so).

    Value range: G ends in tanh, t ∈ [-1, 1]; its image in pixels is (t + 1) / 2, mapped into the model's
    normalized space with ``normalize`` (``decode``, ``sample``). D sees images in [-1, 1]: real ones as
    2 · ``to_pixels(x)`` − 1 (the chapter's rescaling of the data), fake ones as G's raw t.

    Validation (and test): each validation image is paired with a fake from a code seeded by its dataset
    index (the same fakes every epoch, batching and process count), with D and G in eval mode. Logged:
    ``val/d_loss``, ``val/g_loss``, ``val/d_real``, ``val/d_fake`` and ``val/loss`` = ln 2 − ``val/d_loss``.
    That is a lower bound, in nats, on the Jensen–Shannon divergence between the data and G's images as the
    current D can tell them apart (for any D, V(D, G) ≤ 2 JSD − ln 4 with V = −2 d_loss; Goodfellow et al.,
    Theorem 1): 0 when D cannot tell held-out images from fakes, ln 2 at most. It is only as tight as D, so
    it is not comparable with an autoencoder's ``val/loss``, and the "best" checkpoint it selects is the one
    whose discriminator was most fooled; use FID (``val/fid``) to compare models.

    A GAN has no encoder: ``encode``, ``reconstruct`` and ``embed`` are absent (``None``), so the
    reconstruction metrics, reconstruction grids and latent traversals turn themselves off with one
    warning naming the missing method, and ``evaluate`` reports FID/KID without SSIM/PSNR.

    Args:
        generator: The generator: ``betavae.nets.ChapterGenerator`` (28×28) or ``RadfordGenerator`` (64×64),
            or any module built as ``generator(latent_dim, channels, image_size)`` mapping (B, latent_dim) to
            (B, C, H, W) images in [-1, 1].
        discriminator: ``ChapterDiscriminator``, ``RadfordDiscriminator``, or any module built as
            ``discriminator(channels, image_size)`` mapping images in [-1, 1] to logits (B,).
        latent_dim: Size of z (the chapter and the paper: 100).
        generator_optimizer: The generator's optimizer, by class path (default Radford et al.'s Adam: lr 2e-4, betas
            (0.5, 0.999); the chapter's is ``torch.optim.RMSprop`` with lr 1e-3, alpha 0.9, eps 1e-7).
        discriminator_optimizer: The discriminator's optimizer, by class path (the same default).
        lr_scheduler: The generator's learning-rate schedule, stepped per epoch; ``None`` (default): constant.
        discriminator_lr_scheduler: The discriminator's schedule; ``None`` (default): constant.
        in_channels: Image channels. Linked from the data module by the CLI.
        image_size: Image height and width. Linked from the data module by the CLI.
        mean: Normalization mean of the data (see ``AutoencoderModule``). Linked by the CLI.
        std: Normalization std of the data. Linked by the CLI.
        compile: ``torch.compile`` both networks (see ``AutoencoderModule``).
    """

    encode = None  # no encoder: the callbacks that need one see "DCGAN has no method encode()"
    reconstruct = None
    embed = None

    def __init__(
        self,
        generator: GeneratorFactory,
        discriminator: DiscriminatorFactory,
        latent_dim: int = 100,
        generator_optimizer: OptimizerCallable = RADFORD_OPTIMIZER,
        discriminator_optimizer: OptimizerCallable = RADFORD_OPTIMIZER,
        lr_scheduler: LRSchedulerCallable | None = None,
        discriminator_lr_scheduler: LRSchedulerCallable | None = None,
        in_channels: int = 3,
        image_size: int = 64,
        mean: Sequence[float] | None = None,
        std: Sequence[float] | None = None,
        compile: bool = False,
    ) -> None:
        super().__init__(
            in_channels=in_channels,
            image_size=image_size,
            mean=mean,
            std=std,
            optimizer=generator_optimizer,
            lr_scheduler=lr_scheduler,
            compile=compile,
        )
        if latent_dim < 1:
            raise ConfigError(f"latent_dim must be a positive integer, got {latent_dim}")
        # again, so that the checkpoint's hyperparameters are this class's arguments only (the base's
        # likelihood, reduction, ... mean nothing for a GAN and would break load_from_checkpoint)
        self.save_hyperparameters()
        self.automatic_optimization = False
        self.latent_dim = latent_dim
        self.discriminator_optimizer = discriminator_optimizer
        self.discriminator_lr_scheduler = discriminator_lr_scheduler
        self.generator = generator(latent_dim, in_channels, image_size)
        self.discriminator = discriminator(in_channels, image_size)

    # ----------------------------------------------------------------- public API
    def to_tanh_range(self, x: torch.Tensor) -> torch.Tensor:
        """Normalized images → [-1, 1], the discriminator's input range."""
        return self.to_pixels(x) * 2 - 1

    def decode(self, z: torch.Tensor, label: torch.Tensor | None = None) -> torch.Tensor:
        """Codes (B, latent_dim) → G's images (B, C, H, W) in the model's normalized space."""
        return self.normalize((self.generator(z) + 1) / 2)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.decode(z)

    def sample(
        self, n: int, generator: torch.Generator | None = None, label: torch.Tensor | None = None
    ) -> torch.Tensor:
        """G's images of ``n`` draws z ~ N(0, I), normalized space (``to_pixels`` to view), like a VAE's."""
        z = torch.randn(n, self.latent_dim, generator=generator, device=self.device)
        return self.decode(z)

    def real_probability(self, x: torch.Tensor) -> torch.Tensor:
        """D's probability (B,) that each normalized image of ``x`` is real."""
        return torch.sigmoid(self.discriminator(self.to_tanh_range(x)))

    # ----------------------------------------------------------------- losses
    @staticmethod
    def _bce(logits: torch.Tensor, target: float) -> torch.Tensor:
        return F.binary_cross_entropy_with_logits(logits, torch.full_like(logits, target))

    def _d_parts(self, real_logits: torch.Tensor, fake_logits: torch.Tensor) -> dict[str, torch.Tensor]:
        return {
            "d_loss": 0.5 * (self._bce(real_logits, 1.0) + self._bce(fake_logits, 0.0)),
            "d_real": torch.sigmoid(real_logits.detach()).mean(),
            "d_fake": torch.sigmoid(fake_logits.detach()).mean(),
        }

    def loss_parts(self, batch: dict[str, Any]) -> dict[str, torch.Tensor]:
        """Validation and test: D on the batch and on fakes of codes seeded by each image's dataset index."""
        x = batch["image"]  # (B, C, H, W), normalized
        z = image_noise(batch, x.new_empty(x.shape[0], self.latent_dim))  # (B, latent_dim), seeded per image
        fake_logits = self.discriminator(self.generator(z))
        parts = self._d_parts(self.discriminator(self.to_tanh_range(x)), fake_logits)
        parts["g_loss"] = self._bce(fake_logits, 1.0)
        return {"loss": math.log(2) - parts["d_loss"], **parts}

    # ----------------------------------------------------------------- steps
    def training_step(self, batch: dict[str, Any], batch_idx: int) -> None:
        opt_d, opt_g = self.optimizers()
        real = self.to_tanh_range(batch["image"])  # (B, C, H, W) in [-1, 1]
        z = torch.randn(real.shape[0], self.latent_dim, device=real.device, dtype=real.dtype)
        fake = self.generator(z)  # (B, C, H, W) in [-1, 1]

        # 1. discriminator, G fixed (its output detached)
        parts = self._d_parts(self.discriminator(real), self.discriminator(fake.detach()))
        self._stop_if_not_finite({"loss": parts["d_loss"], **parts}, batch_idx)
        opt_d.zero_grad()
        self.manual_backward(parts["d_loss"])
        opt_d.step()

        # 2. generator, through the updated D with D's weights frozen
        self.toggle_optimizer(opt_g)
        parts["g_loss"] = self._bce(self.discriminator(fake), 1.0)
        self._stop_if_not_finite({"loss": parts["g_loss"], **parts}, batch_idx)
        opt_g.zero_grad()
        self.manual_backward(parts["g_loss"])
        opt_g.step()
        self.untoggle_optimizer(opt_g)
        self._log_parts("train", parts, batch)

    def predict_step(self, batch: dict[str, Any], batch_idx: int) -> dict[str, torch.Tensor]:
        """Per image: ``"d_real"``, D's probability that it is real, and the batch's ``"index"`` / ``"label"``."""
        out = {"d_real": self.real_probability(batch["image"])}
        out.update({k: batch[k] for k in ("index", "label") if k in batch})
        return out

    # ----------------------------------------------------------------- optimization
    def on_train_epoch_end(self) -> None:
        """Step the schedules there are once per epoch (manual optimization leaves it to the model)."""
        step_schedulers(self.lr_schedulers(), self.trainer.callback_metrics)

    def configure_optimizers(self) -> Any:
        """[discriminator's, generator's] optimizer, with the schedules that are not ``None`` (D's first)."""
        opt_d = build_optimizer(
            self.discriminator_optimizer, self.discriminator.parameters(), "discriminator_optimizer"
        )
        opt_g = build_optimizer(self.optimizer, self.generator.parameters())
        schedulers = [
            build_scheduler(self.discriminator_lr_scheduler, opt_d, "discriminator_lr_scheduler"),
            build_scheduler(self.lr_scheduler, opt_g),
        ]
        schedulers = [scheduler_config(s) for s in schedulers if s is not None]
        if not schedulers:
            return [opt_d, opt_g]
        return [opt_d, opt_g], schedulers

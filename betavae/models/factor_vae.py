"""FactorVAE (Kim & Mnih 2018, "Disentangling by Factorising"): a VAE plus a discriminator on its codes."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Literal

import torch
import torch.nn.functional as F
from lightning.pytorch.cli import LRSchedulerCallable, OptimizerCallable
from torch.func import functional_call

from betavae.errors import ConfigError
from betavae.image_seeds import image_seeds
from betavae.models.base import check_non_negative
from betavae.models.estimators import permute_dims
from betavae.models.optim import build_optimizer, build_scheduler, scheduler_config, step_schedulers
from betavae.models.posterior import DiagonalGaussian
from betavae.models.vae import VAE
from betavae.nets import CodeDiscriminator

#: Kim & Mnih's discriminator optimizer: Adam, lr 1e-4, betas (0.5, 0.9)
PAPER_DISCRIMINATOR_OPTIMIZER: Mapping[str, Any] = {
    "class_path": "torch.optim.Adam",
    "init_args": {"lr": 1e-4, "betas": (0.5, 0.9)},
}


class FactorVAE(VAE):
    """FactorVAE: the VAE loss plus γ times the total correlation, estimated by a discriminator.

    loss = recon + kld_weight · (KL + γ · TC), TC = mean over the batch of the discriminator's logit
    log D(z) − log(1 − D(z)) at the codes z ~ q(z|x) (the density-ratio trick; Kim & Mnih 2018, Eq. 2 and
    Algorithm 2; disentanglement_lib's ``FactorVAE``). The discriminator (``CodeDiscriminator``) learns to
    tell those codes (label 1) from the same codes with every dimension shuffled across the batch
    independently (``permute_dims``, samples of Π_d q(z_d); label 0): disc_loss = ½ BCE(real) + ½ BCE(permuted).
    The permuted codes come from the same batch, as in disentanglement_lib (the paper draws a second
    batch), detached from the encoder. Logged: ``tc``, ``disc_loss``, ``disc_accuracy`` besides ``recon``
    and ``kl``; validation logs the same parts (its shuffle seeded by the batch's first dataset index).

    Training uses Lightning's manual optimization with two optimizers, each chosen by class path: the VAE's
    (``optimizer``, ``lr_scheduler`` stepped per epoch, as every model here) and the discriminator's
    (``discriminator_optimizer``, by default Adam at 1e-4 with betas (0.5, 0.9), the paper's;
    ``discriminator_lr_scheduler``, by default none: a constant rate). One backward pass of
    loss + disc_loss gives each its own gradients: the TC term reaches the encoder through detached
    discriminator weights, the discriminator sees detached codes. Both gradients are taken at the same
    weights, then both optimizers step, as disentanglement_lib's grouped train ops. ``global_step`` counts
    VAE updates (one per batch, like every other model), not the discriminator's. Checkpoints hold both
    optimizers' states and the scheduler's, so ``--ckpt_path last`` resumes both. Under DDP the shuffle,
    and so the discriminator's negatives, stay within each process's batch, and validation uses rank 0's
    BatchNorm statistics on every rank (``on_validation_epoch_start``), as automatic optimization does.

    Lightning refuses ``trainer.gradient_clip_val`` (and ``accumulate_grad_batches``) under manual
    optimization; set ``gradient_clip_val`` here instead, applied to each optimizer's gradients with
    ``clip_gradients``.

    Args:
        gamma: Weight of the total correlation (disentanglement_lib sweeps 10 to 100).
        discriminator_hidden: Hidden widths of the discriminator (the paper: six layers of 1000).
        discriminator_optimizer: The discriminator's optimizer, by class path (the paper: Adam, lr 1e-4, betas
            (0.5, 0.9)).
        discriminator_lr_scheduler: The discriminator's learning-rate schedule, stepped per epoch; ``None``
            (the default) keeps its rate constant.
        gradient_clip_val: Clip each optimizer's gradients at this value; ``None``: no clipping.
        gradient_clip_algorithm: ``"norm"`` (total 2-norm) or ``"value"`` (each element).
        **kwargs: ``VAE`` arguments (encoder, decoder, latent_dim, kld_weight, likelihood, optimizer, ...).
    """

    def __init__(
        self,
        gamma: float = 35.0,
        discriminator_hidden: Sequence[int] = (1000,) * 6,
        discriminator_optimizer: OptimizerCallable = PAPER_DISCRIMINATOR_OPTIMIZER,
        discriminator_lr_scheduler: LRSchedulerCallable | None = None,
        gradient_clip_val: float | None = None,
        gradient_clip_algorithm: Literal["norm", "value"] = "norm",
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        if gradient_clip_algorithm not in ("norm", "value"):
            raise ConfigError(f"gradient_clip_algorithm must be 'norm' or 'value', got {gradient_clip_algorithm!r}")
        check_non_negative(gamma=gamma)
        self.automatic_optimization = False
        self.discriminator = CodeDiscriminator(self.latent_dim, discriminator_hidden)
        self.discriminator_optimizer = discriminator_optimizer
        self.discriminator_lr_scheduler = discriminator_lr_scheduler

    @classmethod
    def comparison_beta(cls, hparams: Mapping[str, Any]) -> float | None:
        """``None``: FactorVAE's weight is γ, on the total correlation, not a β."""
        return None

    # ----------------------------------------------------------------- loss
    def regularizer(
        self, kl: torch.Tensor, posterior: DiagonalGaussian, z: torch.Tensor, batch: dict[str, Any]
    ) -> dict[str, torch.Tensor]:
        frozen = {name: p.detach() for name, p in self.discriminator.named_parameters()}
        tc = functional_call(self.discriminator, frozen, (z,)).mean()  # gradient to the encoder only
        generator = None
        if not self.training:  # the same shuffle at every validation
            generator = torch.Generator(device=z.device).manual_seed(image_seeds(batch)[0])
        codes = z.detach()
        real = self.discriminator(codes)  # (B,)
        permuted = self.discriminator(permute_dims(codes, generator))  # (B,)
        disc_loss = 0.5 * (
            F.binary_cross_entropy_with_logits(real, torch.ones_like(real))
            + F.binary_cross_entropy_with_logits(permuted, torch.zeros_like(permuted))
        )
        accuracy = 0.5 * ((real > 0).float().mean() + (permuted < 0).float().mean())
        return {
            "kl_term": self.hparams.kld_weight * (kl + self.hparams.gamma * tc),
            "tc": tc,
            "disc_loss": disc_loss,
            "disc_accuracy": accuracy,
        }

    # ----------------------------------------------------------------- optimization
    def training_step(self, batch: dict[str, Any], batch_idx: int) -> None:
        vae_optimizer, disc_optimizer = self.optimizers()
        parts = self.loss_parts(batch)
        self._stop_if_not_finite(parts, batch_idx, keys=("loss", "disc_loss"))
        vae_optimizer.zero_grad()
        disc_optimizer.zero_grad()
        self.manual_backward(parts["loss"] + parts["disc_loss"])  # disjoint: VAE weights ← loss, D ← disc_loss
        clip = self.hparams.gradient_clip_val
        if clip is not None:
            for optimizer in (vae_optimizer, disc_optimizer):
                self.clip_gradients(
                    optimizer, gradient_clip_val=clip, gradient_clip_algorithm=self.hparams.gradient_clip_algorithm
                )
        vae_optimizer.step()  # counted in global_step
        # the same precision/strategy path as LightningOptimizer.step, without counting a second global step
        self.trainer.strategy.optimizer_step(disc_optimizer.optimizer, closure=lambda: None)
        self._log_parts("train", parts, batch)

    def on_validation_epoch_start(self) -> None:
        """Under DDP, every rank takes rank 0's buffers (BatchNorm's running statistics), the checkpointed ones.

        With automatic optimization DDP broadcasts them before every forward; under manual optimization
        Lightning's DDP wrapper stops doing so after the first step, and each rank would validate with the
        running statistics of its own batches.
        """
        if torch.distributed.is_available() and torch.distributed.is_initialized():
            for buffer in self.buffers():
                torch.distributed.broadcast(buffer, src=0)

    on_test_epoch_start = on_validation_epoch_start

    def on_train_epoch_end(self) -> None:
        """Step the schedules there are once per epoch (manual optimization leaves it to the model)."""
        step_schedulers(self.lr_schedulers(), self.trainer.callback_metrics)

    def configure_optimizers(self) -> Any:
        """[the VAE's optimizer, the discriminator's], with the schedules that are not ``None`` (VAE's first)."""
        vae_params = [p for name, p in self.named_parameters() if not name.startswith("discriminator.")]
        vae_optimizer = build_optimizer(self.optimizer, vae_params)
        disc_optimizer = build_optimizer(
            self.discriminator_optimizer, self.discriminator.parameters(), "discriminator_optimizer"
        )
        schedulers = [
            build_scheduler(self.lr_scheduler, vae_optimizer),
            build_scheduler(self.discriminator_lr_scheduler, disc_optimizer, "discriminator_lr_scheduler"),
        ]
        schedulers = [scheduler_config(s) for s in schedulers if s is not None]
        if not schedulers:
            return [vae_optimizer, disc_optimizer]
        return [vae_optimizer, disc_optimizer], schedulers

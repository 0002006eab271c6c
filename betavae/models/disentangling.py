"""Models β-VAE is compared against that only change the VAE's penalty: β-TCVAE and DIP-VAE.

Both are :class:`VAE` subclasses that override ``regularizer``; the network, the likelihood, the
optimizer, the public API (``encode``/``decode``/``sample``/``reconstruct``) and so every callback are the
VAE's. As in ``BetaVAE``, ``kld_weight`` scales the whole regularizer, so with ``likelihood: bce,
reduction: sum, kld_weight: 1`` (disentanglement_lib's setting) the losses are the papers'. FactorVAE, which
also needs a second optimizer, is in ``betavae.models.factor_vae``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal

import lightning as L
import torch
from lightning.pytorch.utilities import rank_zero_info

from betavae.errors import ConfigError
from betavae.models.base import attached_trainer, check_non_negative
from betavae.models.estimators import covariance, dip_penalties, kl_decomposition
from betavae.models.posterior import DiagonalGaussian
from betavae.models.vae import VAE


def training_set_size(trainer: L.Trainer | None) -> int:
    """The number of training images of the trainer's data module (its ``train_dataloader().dataset``).

    Raises:
        ConfigError: no trainer or no data module to ask.
    """
    datamodule = getattr(trainer, "datamodule", None) if trainer is not None else None
    if datamodule is None:
        raise ConfigError(
            "BetaTCVAE needs the training set's size N for its estimate of the aggregate posterior q(z): "
            "train it with a data module (it reads len(train_dataloader().dataset)), or set "
            "model.init_args.dataset_size"
        )
    return len(datamodule.train_dataloader().dataset)


class BetaTCVAE(VAE):
    """β-TCVAE (Chen et al. 2018, "Isolating Sources of Disentanglement in Variational Autoencoders").

    The KL splits into index-code mutual information (MI), total correlation (TC) and dimension-wise KL
    (``betavae.models.estimators.kl_decomposition``), weighted α, β, γ:
    loss = recon + kld_weight · (KL + (α − 1)·MI + (β − 1)·TC + (γ − 1)·dw_kl).
    Since MI + TC + dw_kl is the Monte Carlo estimate of KL, this equals recon + kld_weight · (α·MI +
    β·TC + γ·dw_kl) in expectation; the analytic KL carries the unit weights (lower variance), which for
    α = γ = 1 is disentanglement_lib's ``BetaTCVAE`` (``kl_loss + (beta - 1) * total_correlation``).
    Logged: ``mi``, ``tc``, ``dw_kl`` besides ``recon`` and ``kl``.

    log q(z) and log Π_d q(z_d) are estimated on the minibatch, which needs N, the number of training
    images: stratified sampling (``mss``, the paper's Appendix C.2; the default) or minibatch-weighted
    sampling (``mws``, the paper's Section 4.1 and its reference code's default, with the −log(N·M)
    constant). MWS gives the gradients Chen et al. trained with, but its values are biased: ``tc`` reads
    high by up to (D − 1)·log N (for independent 4-d codes and N = 2,000 it reads about 23 nats where the
    true TC, by brute force over the dataset, is 0.15 and MSS on batches of 1,024 reads 0.10;
    ``tests/test_comparison_models.py``), and ``mi``
    and ``dw_kl`` are shifted to match (``dw_kl`` even goes negative). Hence MSS by default, so that the
    logged terms can be read in nats; choose ``mws`` to reproduce the reference code.

    The estimate is over one batch, so ``tc``, ``mi`` and ``dw_kl`` depend on the batch size and, under DDP,
    are per process (each process's batch against the whole training set's N); validation values are
    deterministic for a fixed validation loader but, unlike ``recon`` and ``kl``, not independent of how
    the images are batched.

    Args:
        alpha: Weight of the index-code mutual information (the paper: 1).
        beta: Weight of the total correlation (the paper's β; disentanglement_lib sweeps 1 to 10).
        gamma: Weight of the dimension-wise KL (the paper: 1).
        sampling: ``"mss"`` (minibatch stratified) or ``"mws"`` (minibatch-weighted).
        dataset_size: N. ``None``: the size of the training split, read from the data module at setup
            (``len(train_dataloader().dataset)``, the whole training set under DDP), printed, and stored
            in the hyperparameters, so a checkpoint keeps it (the hyperparameters logged at the start of
            the run still show ``None``).
        **kwargs: ``VAE`` arguments (encoder, decoder, latent_dim, kld_weight, likelihood, optimizer, ...).
    """

    def __init__(
        self,
        alpha: float = 1.0,
        beta: float = 6.0,
        gamma: float = 1.0,
        sampling: Literal["mws", "mss"] = "mss",
        dataset_size: int | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        check_non_negative(alpha=alpha, beta=beta, gamma=gamma)
        if sampling not in ("mws", "mss"):
            raise ConfigError(f"sampling must be 'mws' (minibatch-weighted) or 'mss' (stratified), got {sampling!r}")
        if dataset_size is not None and dataset_size < 2:
            raise ConfigError(f"dataset_size must be at least 2 (the number of training images), got {dataset_size}")

    @classmethod
    def comparison_beta(cls, hparams: Mapping[str, Any]) -> float | None:
        """``beta``, the weight of the total correlation."""
        return float(hparams.get("beta", 6.0))

    def setup(self, stage: str) -> None:
        """N from the data module when no ``dataset_size`` was given (see Args)."""
        if self.hparams.dataset_size is None:
            self.hparams.dataset_size = training_set_size(self.trainer)
            rank_zero_info(f"BetaTCVAE: q(z) is estimated over N = {self.hparams.dataset_size} training images")

    def regularizer(
        self, kl: torch.Tensor, posterior: DiagonalGaussian, z: torch.Tensor, batch: dict[str, Any]
    ) -> dict[str, torch.Tensor]:
        hp = self.hparams
        if hp.dataset_size is None:
            training_set_size(attached_trainer(self))  # raises with the explanation
        parts = kl_decomposition(z, posterior, hp.dataset_size, hp.sampling)
        extra = (hp.alpha - 1) * parts["mi"] + (hp.beta - 1) * parts["tc"] + (hp.gamma - 1) * parts["dw_kl"]
        return {"kl_term": hp.kld_weight * (kl + extra), **parts}


class DIPVAE(VAE):
    """DIP-VAE (Kumar et al. 2018, "Variational Inference of Disentangled Latent Concepts from Unlabeled
    Observations", Eqs. 6 and 7; disentanglement_lib's ``DIPVAE``).

    loss = recon + kld_weight · (KL + λ_od · Σ_{i≠j} Cov_ij² + λ_d · Σ_i (Cov_ii − 1)²), with Cov the batch
    covariance of μ(x) (type ``i``) or of z under q(z), Cov[μ] + E[diag σ²] (type ``ii``), divided by the
    batch size. Logged unweighted as ``dip_off_diagonal`` and ``dip_diagonal``. Batch statistics: under DDP
    each process penalizes the covariance of its own batch.

    Args:
        dip_type: ``"i"`` or ``"ii"``.
        lambda_od: Weight of the off-diagonal penalty (disentanglement_lib sweeps 1 to 50).
        lambda_d: Weight of the diagonal penalty; ``None``: 10·λ_od for type i, λ_od for type ii
            (disentanglement_lib's ``lambda_d_factor``). The value in use is ``model.lambda_d``.
        **kwargs: ``VAE`` arguments (encoder, decoder, latent_dim, kld_weight, likelihood, optimizer, ...).
    """

    def __init__(
        self, dip_type: Literal["i", "ii"] = "i", lambda_od: float = 10.0, lambda_d: float | None = None, **kwargs: Any
    ) -> None:
        super().__init__(**kwargs)
        if dip_type not in ("i", "ii"):
            raise ConfigError(f"dip_type must be 'i' or 'ii', got {dip_type!r}")
        check_non_negative(lambda_od=lambda_od, lambda_d=lambda_d)
        self.lambda_d = float(lambda_d if lambda_d is not None else (10.0 if dip_type == "i" else 1.0) * lambda_od)

    @classmethod
    def comparison_beta(cls, hparams: Mapping[str, Any]) -> float | None:
        """``None``: DIP-VAE's weights are λ_od and λ_d, not a β."""
        return None

    def regularizer(
        self, kl: torch.Tensor, posterior: DiagonalGaussian, z: torch.Tensor, batch: dict[str, Any]
    ) -> dict[str, torch.Tensor]:
        hp = self.hparams
        cov = covariance(posterior.mean)  # (D, D)
        if hp.dip_type == "ii":
            cov = cov + torch.diag_embed(posterior.logvar.exp().mean(dim=0))
        off_diagonal, diagonal = dip_penalties(cov)
        penalty = hp.lambda_od * off_diagonal + self.lambda_d * diagonal
        return {"kl_term": hp.kld_weight * (kl + penalty), "dip_off_diagonal": off_diagonal, "dip_diagonal": diagonal}

"""Minibatch statistics of the aggregate posterior q(z) = 1/N Σ_n q(z | x_n) behind the comparison models.

- ``kl_decomposition``: β-TCVAE's split of the KL (Chen et al. 2018, "Isolating Sources of Disentanglement
  in Variational Autoencoders", Section 3) into index-code mutual information, total correlation and
  dimension-wise KL, with log q(z) and log Π_d q(z_d) estimated on the minibatch by minibatch-weighted
  sampling (MWS, their Section 4.1 and reference code ``rtqichen/beta-tcvae``) or minibatch stratified
  sampling (MSS, their Appendix C.2);
- ``covariance`` and ``dip_penalties``: DIP-VAE's moment matching (Kumar et al. 2018, Eqs. 6 and 7, as
  disentanglement_lib's ``compute_covariance_z_mean`` and ``regularize_diag_off_diag_dip``);
- ``permute_dims``: FactorVAE's samples of Π_d q(z_d) (Kim & Mnih 2018, Algorithm 1).

Every estimate is over the codes of one batch; under DDP that is the batch of one process.
"""

from __future__ import annotations

import math
from typing import Literal

import torch

from betavae.errors import ConfigError
from betavae.models.posterior import DiagonalGaussian

Sampling = Literal["mws", "mss"]


def log_density_matrix(z: torch.Tensor, posterior: DiagonalGaussian) -> torch.Tensor:
    """log q(z_i,d | x_j) for every code i, image j and dimension d: (B, B, D) from codes (B, D)."""
    batch = DiagonalGaussian(posterior.mean.unsqueeze(0), posterior.logvar.unsqueeze(0))  # (1, B, D)
    return batch.log_prob_per_dim(z.unsqueeze(1))  # (B, 1, D) against (1, B, D)


def mws_log_weights(batch_size: int, dataset_size: int) -> torch.Tensor:
    """Minibatch-weighted sampling: every image of the batch weighs 1 / (N·M), M the batch size. (M, M)."""
    _check_sizes(batch_size, dataset_size, "mws")
    return torch.full((batch_size, batch_size), -math.log(dataset_size * batch_size), dtype=torch.float64)


def mss_log_weights(batch_size: int, dataset_size: int) -> torch.Tensor:
    """Minibatch stratified sampling (Chen et al. 2018, Appendix C.2), row i for the code of image i. (B, B).

    With B = M + 1 images: the code's own image weighs 1/N, one other image (the next one, cyclically)
    (N − M)/(N·M), the other M − 1 images 1/M each. A row sums to 1, and for a batch of the own image plus
    M others drawn uniformly without replacement, Σ_j w_ij q(z | x_j) is an unbiased estimate of q(z).
    (The reference code's ``_log_importance_weight_matrix`` strides by B instead of B + 1 and so puts these
    weights on columns 0 and 1 instead of the diagonal and its neighbour; rtqichen/beta-tcvae PR #1.)
    """
    _check_sizes(batch_size, dataset_size, "mss")
    n, m = dataset_size, batch_size - 1
    weights = torch.full((batch_size, batch_size), 1.0 / m, dtype=torch.float64)
    rows = torch.arange(batch_size)
    weights[rows, rows] = 1.0 / n
    weights[rows, (rows + 1) % batch_size] = (n - m) / (n * m)
    return weights.log()


def _check_sizes(batch_size: int, dataset_size: int, sampling: str) -> None:
    if batch_size < 2:
        raise ConfigError(f"the total correlation estimators need a batch of at least 2 codes, got {batch_size}")
    if dataset_size < batch_size:
        raise ConfigError(
            f"{sampling}: the dataset size N ({dataset_size}) is smaller than the batch ({batch_size}); N is the "
            "number of training images the aggregate posterior runs over"
        )


def kl_decomposition(
    z: torch.Tensor, posterior: DiagonalGaussian, dataset_size: int, sampling: Sampling = "mws"
) -> dict[str, torch.Tensor]:
    """β-TCVAE's decomposition of the batch's KL, each term a batch mean in nats.

    ``"mi"`` = E[log q(z|x) − log q(z)] (index-code mutual information), ``"tc"`` = E[log q(z) − Σ_d log q(z_d)]
    (total correlation), ``"dw_kl"`` = E[Σ_d log q(z_d) − log p(z)] (dimension-wise KL), at the codes ``z``
    (B, D) drawn from ``posterior``. They sum to the Monte Carlo KL E[log q(z|x) − log p(z)] exactly, whatever
    the estimator of q(z); its expectation is the analytic KL. log q(z) and log q(z_d) are
    log Σ_j w_ij q(z_i | x_j) with the weights of ``mws_log_weights`` (Chen et al.'s estimator and constant
    −log(N·M), as in their code; disentanglement_lib's ``total_correlation`` drops the constant) or
    ``mss_log_weights``.

    Args:
        z: Codes (B, D), one drawn from each image's posterior.
        posterior: The batch's posteriors, μ and log σ² (B, D).
        dataset_size: N, the number of images the aggregate posterior q(z) averages over (the training set).
        sampling: ``"mws"`` (minibatch-weighted) or ``"mss"`` (minibatch stratified).
    """
    if sampling not in ("mws", "mss"):
        raise ConfigError(f"sampling must be 'mws' or 'mss', got {sampling!r}")
    b = z.shape[0]
    log_w = (mws_log_weights if sampling == "mws" else mss_log_weights)(b, dataset_size).to(z)  # (B, B)
    log_q = log_density_matrix(z, posterior)  # (B, B, D): log q(z_i,d | x_j)
    log_qz_x = log_q.diagonal(dim1=0, dim2=1).sum(dim=0)  # (B,): log q(z_i | x_i)
    log_qz = torch.logsumexp(log_w + log_q.sum(dim=2), dim=1)  # (B,)
    log_prod_qzd = torch.logsumexp(log_w.unsqueeze(2) + log_q, dim=1).sum(dim=1)  # (B,)
    log_pz = DiagonalGaussian(torch.zeros_like(z), torch.zeros_like(z)).log_prob_per_dim(z).sum(dim=1)  # (B,)
    return {
        "mi": (log_qz_x - log_qz).mean(),
        "tc": (log_qz - log_prod_qzd).mean(),
        "dw_kl": (log_prod_qzd - log_pz).mean(),
    }


def covariance(x: torch.Tensor) -> torch.Tensor:
    """Cov[x] = E[x xᵀ] − E[x] E[x]ᵀ over the batch (divided by B, as disentanglement_lib): (D, D) from (B, D)."""
    centred = x - x.mean(dim=0, keepdim=True)
    return centred.T @ centred / x.shape[0]


def dip_penalties(cov: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(Σ_{i≠j} Cov_ij², Σ_i (Cov_ii − 1)²): how far ``cov`` (D, D) is from the identity, off and on the diagonal."""
    diagonal = cov.diagonal()
    off = (cov - torch.diag_embed(diagonal)).pow(2).sum()
    return off, (diagonal - 1).pow(2).sum()


def permute_dims(z: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
    """Each column of ``z`` (B, D) shuffled across the batch independently: samples of Π_d q(z_d) (B, D)."""
    keys = torch.rand(z.shape, generator=generator, device=z.device)
    return z.gather(0, keys.argsort(dim=0))

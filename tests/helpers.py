"""Test helpers shared by several test modules (tests never import each other): models, callbacks and
feature networks importable by class path from the CLI (``helpers.NaNAtStepBetaVAE``,
``helpers.CountingFeatures``), reference scores, random Inception weights, and a subprocess runner that
cannot hang a test run."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from skimage.metrics import peak_signal_noise_ratio, structural_similarity
from torch import nn

from betavae.fid import GenerativeScores, PixelFeatures

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "scripts"))
from benchmark_fid import random_inception_weights  # noqa: E402, F401  (the FID benchmark's timing network)

from betavae.models import AutoencoderModule, BetaVAE, DiagonalGaussian


class NaNAtStepBetaVAE(BetaVAE):
    """A β-VAE whose training loss turns NaN from optimizer step ``nan_at_step`` on.

    Args:
        nan_at_step: First global step with a NaN loss.
        **kwargs: ``BetaVAE`` arguments.
    """

    def __init__(self, nan_at_step: int = 3, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.nan_at_step = nan_at_step

    def loss_parts(self, batch: dict[str, Any]) -> dict[str, torch.Tensor]:
        parts = super().loss_parts(batch)
        if self.training and self.global_step >= self.nan_at_step:
            parts["recon"] = parts["recon"] * float("nan")
            parts["loss"] = parts["loss"] * float("nan")
        return parts


class NaNValidationBetaVAE(BetaVAE):
    """A β-VAE whose training stays finite but whose validation loss is NaN from epoch ``nan_at_epoch`` on:
    a divergence that first shows in validation.

    Args:
        nan_at_epoch: First epoch with a NaN validation loss.
        **kwargs: ``BetaVAE`` arguments.
    """

    def __init__(self, nan_at_epoch: int = 1, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.nan_at_epoch = nan_at_epoch

    def loss_parts(self, batch: dict[str, Any]) -> dict[str, torch.Tensor]:
        parts = super().loss_parts(batch)
        if not self.training and self.current_epoch >= self.nan_at_epoch:
            parts = {k: v * float("nan") for k, v in parts.items()}
        return parts


class SlowBetaVAE(BetaVAE):
    """A β-VAE that sleeps ``seconds`` in every training step, so a signal lands in the middle of an epoch.

    Args:
        seconds: Sleep per training step.
        **kwargs: ``BetaVAE`` arguments.
    """

    def __init__(self, seconds: float = 0.05, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.seconds = seconds

    def training_step(self, batch: dict[str, Any], batch_idx: int) -> torch.Tensor:
        time.sleep(self.seconds)
        return super().training_step(batch, batch_idx)


class CountingFeatures(PixelFeatures):
    """``PixelFeatures`` (4x4 pooled pixels, 8 features) that counts the images it has seen: a cheap FID
    feature network for tests that also tells how much was encoded.

    Args:
        num_features: Output size.
        size: Pooled image side.
    """

    def __init__(self, num_features: int = 8, size: int = 4) -> None:
        super().__init__(num_features=num_features, size=size)
        self.seen = 0

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        self.seen += images.shape[0]
        return super().forward(images)


class CountTrainBatches(L.Callback):
    batches = 0

    def on_train_batch_start(self, *args) -> None:
        CountTrainBatches.batches += 1


SCALES = (0.5, 3.0, 0.0, 1.0, 2.0, 0.1)  # KL of dimension d is ½ SCALES[d]² E[f²]: ranked 1, 4, 3, 0, 5, 2


class KnownKL(AutoencoderModule):
    """An encoder with known per-dimension KL and a linear decoder.

    μ_d = SCALES[d] · f(x) with f(x) the mean of the normalized image and log σ² = 0, so
    KL(q(z_d | x) ‖ N(0, 1)) = ½ SCALES[d]² f(x)². The decoder is a trainable linear map.
    """

    def __init__(self, image_size: int = 16, **kwargs: Any) -> None:
        super().__init__(in_channels=1, image_size=image_size, **kwargs)
        self.register_buffer("scales", torch.tensor(SCALES))
        self.latent_dim = len(SCALES)
        self.decoder = nn.Linear(self.latent_dim, image_size * image_size)
        with torch.no_grad():
            self.decoder.weight.copy_(
                torch.randn(self.decoder.weight.shape, generator=torch.Generator().manual_seed(0))
            )

    @staticmethod
    def feature(x: torch.Tensor) -> torch.Tensor:
        return x.flatten(1).mean(dim=1, keepdim=True)  # (B, 1)

    def encode(self, x: torch.Tensor) -> DiagonalGaussian:
        mean = self.feature(x) * self.scales  # (B, D)
        return DiagonalGaussian(mean, torch.zeros_like(mean))

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        return self.decoder(z).view(-1, 1, self.image_size, self.image_size)

    def reconstruct(self, x: torch.Tensor) -> torch.Tensor:
        return self.decode(self.encode(x).mean)

    def sample(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        return self.decode(torch.randn(n, self.latent_dim, generator=generator, device=self.device))

    def loss_parts(self, batch: dict[str, Any]) -> dict[str, torch.Tensor]:
        recon = F.mse_loss(self.reconstruct(batch["image"]), batch["image"])
        return {"loss": recon, "recon": recon}


def skimage_scores(recon: torch.Tensor, target: torch.Tensor) -> tuple[float, float]:
    """Mean over images of scikit-image's PSNR and SSIM (Gaussian window σ 1.5, data range 1)."""
    psnr, ssim = [], []
    for r, t in zip(recon.double().numpy(), target.double().numpy(), strict=True):  # (C, H, W) each
        psnr.append(peak_signal_noise_ratio(t, r, data_range=1.0))
        ssim.append(
            structural_similarity(
                t,
                r,
                gaussian_weights=True,
                sigma=1.5,
                use_sample_covariance=False,
                data_range=1.0,
                channel_axis=0,
            )
        )
    return float(np.mean(psnr)), float(np.mean(ssim))


def feature_sets(seed: int = 0, d: int = 12, n_a: int = 400, n_b: int = 300) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    mix_a, mix_b = rng.normal(size=(d, d)), rng.normal(size=(d, d))
    a = rng.normal(size=(n_a, d)) @ mix_a
    b = rng.normal(size=(n_b, d)) @ mix_b * 0.7 + 0.5
    return a, b


def scores_with(a: np.ndarray, b: np.ndarray, **kwargs) -> dict[str, float]:
    kwargs.setdefault("kid_subsets", 5)  # KID is not what these tests check: keep it quick
    extractor = nn.Identity()  # the sets are features already
    extractor.num_features = a.shape[1]
    scores = GenerativeScores(extractor, **kwargs)
    for chunk in np.array_split(a, 3):  # several updates, as batches arrive
        scores.update_features(torch.from_numpy(chunk), real=True)
    for chunk in np.array_split(b, 4):
        scores.update_features(torch.from_numpy(chunk), real=False)
    return scores.compute(seed=0)


def seeded_pairs(channels: int, size: int, seed: int, n: int = 6) -> tuple[torch.Tensor, torch.Tensor]:
    """Smooth random images in [0, 1] and noisy, partly clipped versions of them (different noise levels)."""
    g = torch.Generator().manual_seed(seed)
    base = torch.rand(n, channels, size // 4, size // 4, generator=g)
    target = torch.nn.functional.interpolate(base, size=size, mode="bilinear", align_corners=False)
    noise = torch.randn(target.shape, generator=g) * torch.linspace(0.02, 0.3, n).view(n, 1, 1, 1)
    return (target + noise).clamp(0, 1), target


def run_process(args: list[str], env: dict[str, str], timeout: float, cwd: Path | None = None) -> str:
    """Run ``args`` and return its output (stdout and stderr); fail the test with the output's tail when it
    exits non-zero, and kill its whole process group (DDP children included) when it runs past ``timeout``."""
    proc = subprocess.Popen(
        args, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True
    )
    try:
        out, _ = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        out, _ = proc.communicate()
        pytest.fail(f"{' '.join(args)} hung for {timeout}s:\n{out[-4000:]}")
    assert proc.returncode == 0, out[-4000:]
    return out


def flush_wandb() -> None:
    """Finish the open W&B run and wait for W&B's service to exit, so that the offline ``run-*.wandb`` files are
    whole before a test reads them: ``wandb.finish`` can return before the service has written the run's last
    records (seen on loaded cores: a file holding only its 11-byte header). A later ``wandb.init`` starts a new
    service."""
    import wandb

    wandb.finish()
    wandb.teardown()

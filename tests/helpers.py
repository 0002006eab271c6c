"""Test helpers: model variants importable by class path from the CLI (``helpers.NaNAtStepBetaVAE``), and a
subprocess runner that cannot hang a test run."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest
import torch

from betavae.models import BetaVAE


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

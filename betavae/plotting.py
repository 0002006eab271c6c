"""Figures shared by callbacks and commands: image grids and loss curves (matplotlib, Agg backend)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only; no display needed

import matplotlib.pyplot as plt  # noqa: E402
import torch  # noqa: E402
from torchvision.utils import make_grid, save_image  # noqa: E402


def image_rows(rows: Sequence[torch.Tensor], padding: int = 2) -> torch.Tensor:
    """Stack equally long batches of [0, 1] images (N, C, H, W) as the rows of one grid (3, H', W')."""
    n = rows[0].shape[0]
    if any(r.shape[0] != n for r in rows):
        raise ValueError(f"all rows need the same number of images, got {[r.shape[0] for r in rows]}")
    images = torch.cat([r.detach().float().cpu() for r in rows])
    return make_grid(images, nrow=n, padding=padding, pad_value=1.0)


def square_grid(images: torch.Tensor, padding: int = 2) -> torch.Tensor:
    """[0, 1] images (N, C, H, W) in a near-square grid (3, H', W')."""
    nrow = max(1, int(round(images.shape[0] ** 0.5)))
    return make_grid(images.detach().float().cpu(), nrow=nrow, padding=padding, pad_value=1.0)


def save_png(grid: torch.Tensor, path: str | Path) -> Path:
    """Write a [0, 1] image (C, H, W) as PNG, creating the folder."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    save_image(grid, path)
    return path


def plot_curves(
    history: Mapping[str, Sequence[tuple[int, float]]], path: str | Path, parts: Sequence[str] | None = None
) -> Path:
    """One panel per loss part with its ``train/`` and ``val/`` curves against the optimizer step.

    ``history`` maps keys such as ``"train/recon"`` to (step, value) pairs. Training values are
    drawn thin with a running mean over; validation values as points joined by a line.
    """
    if parts is None:
        found = {key.split("/", 1)[1] for key in history if "/" in key}
        parts = [p for p in ("loss", "recon", "kl") if p in found] + sorted(found - {"loss", "recon", "kl"})
    parts = [p for p in parts if history.get(f"train/{p}") or history.get(f"val/{p}")]
    fig, axes = plt.subplots(1, max(1, len(parts)), figsize=(4.2 * max(1, len(parts)), 3.4), squeeze=False)
    for ax, part in zip(axes[0], parts, strict=False):  # no parts: one empty panel
        positive = True
        if train := history.get(f"train/{part}"):
            steps, values = zip(*train, strict=True)
            positive &= min(values) > 0
            ax.plot(steps, values, ".-" if len(values) < 30 else "-", color="tab:blue", alpha=0.3, linewidth=0.8)
            window = max(1, len(values) // 25)
            smooth = torch.tensor(values).unfold(0, window, 1).mean(1).tolist() if len(values) >= window else []
            ax.plot(steps[window - 1 :], smooth, color="tab:blue", label="train")
        if val := history.get(f"val/{part}"):
            steps, values = zip(*val, strict=True)
            positive &= min(values) > 0
            ax.plot(steps, values, "o-", color="tab:orange", markersize=3, label="val")
        if positive:
            ax.set_yscale("log")
        ax.set_title(part)
        ax.set_xlabel("step")
        ax.grid(alpha=0.3)
        ax.legend()
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path

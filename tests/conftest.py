"""Shared fixtures: offline W&B, a quiet Lightning, and small image folders written with PIL."""

from __future__ import annotations

import os
import warnings
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

os.environ.setdefault("WANDB_MODE", "offline")
os.environ.setdefault("WANDB_SILENT", "true")
warnings.filterwarnings("ignore", message=".*isinstance\\(treespec, LeafSpec\\).*")


@pytest.fixture(autouse=True)
def _offline_wandb(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")


def write_images(
    folder: Path, count: int, size: tuple[int, int] = (40, 48), mode: str = "RGB", seed: int = 0, suffix: str = ".png"
) -> list[Path]:
    """``count`` random-blob images of ``size`` (width, height) in ``folder``; returns their paths."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    paths = []
    for i in range(count):
        h, w = size[1], size[0]
        yy, xx = np.mgrid[0:h, 0:w]
        cy, cx = rng.uniform(0.3, 0.7) * h, rng.uniform(0.3, 0.7) * w
        blob = np.exp(-(((yy - cy) / (0.2 * h)) ** 2 + ((xx - cx) / (0.2 * w)) ** 2))
        colour = rng.uniform(0.2, 1.0, size=3)
        rgb = (blob[..., None] * colour * 255).astype(np.uint8)
        path = folder / f"img_{i:04d}{suffix}"
        Image.fromarray(rgb, "RGB").convert(mode).save(path)
        paths.append(path)
    return paths


@pytest.fixture
def image_folder(tmp_path: Path) -> Path:
    """A folder of 12 small RGB PNGs, 4 of them in a subfolder."""
    root = tmp_path / "images"
    write_images(root, 8, seed=1)
    write_images(root / "nested", 4, seed=2, suffix=".jpg")
    return root

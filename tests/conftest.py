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

# small and quick: 2 batches of 4 images, 1 epoch, CSV logging only
TINY = [
    "--trainer.max_epochs=1",
    "--trainer.log_every_n_steps=1",
    "--trainer.limit_train_batches=2",
    "--trainer.limit_val_batches=1",
    "--trainer.logger=lightning.pytorch.loggers.CSVLogger",
    "--trainer.logger.save_dir=runs",
    "--trainer.logger.name=test",
    "--trainer.enable_model_summary=false",
    "--data.init_args.batch_size=4",
    "--progress_bar.refresh_rate=0",
]
#: the tiny β-VAE of the CLI tests (the study's conv net with 2 blocks, 4 latents) on 24 shapes of 16x16
SHAPES_MODEL = [
    "--model=betavae.models.BetaVAE",
    "--model.init_args.encoder.init_args.hidden_channels=[8,16]",
    "--model.init_args.decoder.init_args.hidden_channels=[8,16]",
    "--model.init_args.latent_dim=4",
]
SHAPES_DATA = [
    "--data=betavae.data.ShapesDataModule",
    "--data.init_args.num_images=24",
    "--data.init_args.image_size=16",
]
SHAPES = [*SHAPES_MODEL, *SHAPES_DATA]


@pytest.fixture
def shapes_args() -> list[str]:
    """The CLI arguments of the tiny β-VAE on 24 shapes (``SHAPES``), in batches of 4."""
    return [*SHAPES, "--data.init_args.batch_size=4"]


def conv_nets(*hidden_channels: int, kernel_size: int = 3) -> dict[str, dict]:
    """``encoder`` and ``decoder`` arguments of a VAE: the study's conv net with these block channels."""
    hidden = list(hidden_channels)
    return {
        "encoder": {"class_path": "betavae.nets.ConvEncoder", "init_args": {"hidden_channels": hidden}},
        "decoder": {
            "class_path": "betavae.nets.ConvDecoder",
            "init_args": {"hidden_channels": hidden, "kernel_size": kernel_size},
        },
    }


def burgess_nets(*hidden_channels: int) -> dict[str, dict]:
    """``encoder`` and ``decoder`` arguments of a VAE: Burgess et al.'s conv net with these block channels."""
    hidden = list(hidden_channels)
    return {
        "encoder": {"class_path": "betavae.nets.BurgessEncoder", "init_args": {"hidden_channels": hidden}},
        "decoder": {"class_path": "betavae.nets.BurgessDecoder", "init_args": {"hidden_channels": hidden}},
    }


@pytest.fixture(autouse=True)
def _offline_wandb(monkeypatch: pytest.MonkeyPatch):
    """W&B offline, and no W&B run left open for the next test (a WandbLogger's run outlives ``fit``)."""
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")
    yield
    import wandb

    if wandb.run is not None:
        wandb.finish()


@pytest.fixture(autouse=True)
def _keep_rank_zero(monkeypatch: pytest.MonkeyPatch) -> None:
    """A Trainer whose strategy claims a non-zero rank (faked SLURM ranks, ``RankOne``) sets the
    process-wide rank of ``rank_zero_*``, which would silence loggers in later tests; restore it."""
    from lightning.fabric.utilities import rank_zero as fabric_rank_zero
    from lightning.pytorch.utilities import rank_zero as pytorch_rank_zero
    from lightning_utilities.core import rank_zero as utils_rank_zero

    for module in (fabric_rank_zero, pytorch_rank_zero, utils_rank_zero):
        monkeypatch.setattr(module.rank_zero_only, "rank", getattr(module.rank_zero_only, "rank", 0))


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


@pytest.fixture(autouse=True)
def _decoded_cache_in_tmp(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    """Decoded caches go to a fresh temporary folder per test, never to the user's ~/.cache."""
    monkeypatch.setenv("BETAVAE_CACHE_DIR", str(tmp_path_factory.mktemp("decoded_cache")))


def write_idx(path: Path, array: np.ndarray) -> Path:
    """``array`` (uint8) as an IDX file (magic 0x0000080N, big-endian dims), gzip-compressed for ``.gz``."""
    import gzip

    array = np.ascontiguousarray(array, dtype=np.uint8)
    header = bytes([0, 0, 0x08, array.ndim]) + b"".join(int(n).to_bytes(4, "big") for n in array.shape)
    path.parent.mkdir(parents=True, exist_ok=True)
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "wb") as f:
        f.write(header + array.tobytes())
    return path


def write_idx_set(folder: Path, n_train: int = 12, n_test: int = 0, gz: bool = True, seed: int = 0) -> None:
    """MNIST-style IDX files in ``folder``: random 28x28 digits with labels ``i % 10``."""
    rng = np.random.default_rng(seed)
    suffix = ".gz" if gz else ""
    for part, n in (("train", n_train), ("t10k", n_test)):
        if n:
            write_idx(folder / f"{part}-images-idx3-ubyte{suffix}", rng.integers(0, 256, (n, 28, 28)))
            write_idx(folder / f"{part}-labels-idx1-ubyte{suffix}", np.arange(n) % 10)


def write_broken_images(folder: Path) -> list[Path]:
    """Four unreadable "images": a truncated JPEG, a truncated PNG, text named .jpg, an empty .png."""
    folder.mkdir(parents=True, exist_ok=True)
    noise = np.random.default_rng(9).integers(0, 256, (60, 50, 3), dtype=np.uint8)
    broken = []
    for name in ("truncated.jpg", "truncated.png"):
        path = folder / name
        Image.fromarray(noise).save(path)
        path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
        broken.append(path)
    (folder / "notes.jpg").write_text("not an image")
    (folder / "empty.png").write_bytes(b"")
    return [*broken, folder / "notes.jpg", folder / "empty.png"]


DSPRITES_TINY_SIZES = (1, 3, 2, 4, 3, 3)  # color, shape, scale, orientation, pos_x, pos_y: 216 images
SHAPES3D_TINY_SIZES = (2, 3, 2, 2, 4, 3)  # floor_hue, wall_hue, object_hue, scale, shape, orientation: 288


def grid_classes(sizes: tuple[int, ...]) -> np.ndarray:
    """Every index combination of ``sizes`` (prod(sizes), K) int64, the last factor fastest."""
    return np.stack(np.unravel_index(np.arange(int(np.prod(sizes))), sizes), axis=1).astype(np.int64)


def write_dsprites(
    path: Path, sizes: tuple[int, ...] = DSPRITES_TINY_SIZES, image_size: int = 64, seed: int = 0, **replace
) -> Path:
    """A dSprites npz in the standard file's format (imgs 0/1 uint8 (N, S, S), latents_values float64 (N, 6),
    latents_classes int64 (N, 6), a pickled metadata dict) for a small grid of random binary images.
    ``replace`` swaps or (with ``None``) drops arrays, to write broken files."""
    rng = np.random.default_rng(seed)
    classes = grid_classes(sizes)
    grids = [
        np.ones(sizes[0]),
        np.arange(1.0, sizes[1] + 1),  # shapes are 1, 2, 3 in the real file
        np.linspace(0.5, 1.0, sizes[2]),
        np.linspace(0.0, 2 * np.pi, sizes[3]),
        np.linspace(0.0, 1.0, sizes[4]),
        np.linspace(0.0, 1.0, sizes[5]),
    ]
    values = np.stack([grid[classes[:, k]] for k, grid in enumerate(grids)], axis=1)
    arrays = {
        "imgs": (rng.random((len(classes), image_size, image_size)) < 0.3).astype(np.uint8),
        "latents_values": values,
        "latents_classes": classes,
        "metadata": np.array({"description": "tiny dSprites for tests", "latents_sizes": sizes}, dtype=object),
    }
    arrays.update(replace)
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(path, **{k: v for k, v in arrays.items() if v is not None})
    return path


def write_shapes3d(
    path: Path, sizes: tuple[int, ...] = SHAPES3D_TINY_SIZES, image_size: int = 64, seed: int = 0, **replace
) -> Path:
    """A 3dshapes.h5 in the real file's format (images uint8 (N, S, S, 3), labels float64 (N, 6), gzip chunks)
    for a small grid of random images; ``replace`` swaps or (with ``None``) drops datasets."""
    import h5py

    rng = np.random.default_rng(seed)
    classes = grid_classes(sizes)
    grids = [
        np.linspace(0.0, 0.9, sizes[0]),
        np.linspace(0.0, 0.9, sizes[1]),
        np.linspace(0.0, 0.9, sizes[2]),
        np.linspace(0.75, 1.25, sizes[3]),
        np.arange(float(sizes[4])),
        np.linspace(-30.0, 30.0, sizes[5]),
    ]
    arrays = {
        "images": rng.integers(0, 256, (len(classes), image_size, image_size, 3), dtype=np.uint8),
        "labels": np.stack([grid[classes[:, k]] for k, grid in enumerate(grids)], axis=1),
    }
    arrays.update(replace)
    path.parent.mkdir(parents=True, exist_ok=True)
    with h5py.File(path, "w") as f:
        for key, array in arrays.items():
            if array is not None:
                chunks = (min(7, len(array)), *array.shape[1:]) if array.ndim == 4 else True
                f.create_dataset(key, data=array, compression="gzip", chunks=chunks)
    return path


def write_celeba(root: Path, count: int = 96, seed: int = 0) -> Path:
    """A CelebA layout (``img_align_celeba/000001.jpg …`` and ``list_attr_celeba.txt``) with 3 attributes:
    ``Bright`` (the image is bright: gray 200 instead of 40, plus noise), ``Male`` (every third image) and
    ``Smiling`` (seeded coin flips); returns ``root``."""
    rng = np.random.default_rng(seed)
    folder = root / "img_align_celeba"
    folder.mkdir(parents=True, exist_ok=True)
    table = np.stack([np.arange(count) % 2, np.arange(count) % 3 == 0, rng.integers(0, 2, count)], axis=1)
    for i, (bright, _, _) in enumerate(table):
        pixels = np.clip((200 if bright else 40) + rng.normal(0, 10, (70, 60, 3)), 0, 255).astype(np.uint8)
        Image.fromarray(pixels, "RGB").save(folder / f"{i + 1:06d}.jpg")
    rows = "".join(
        f"{i + 1:06d}.jpg " + " ".join("1" if v else "-1" for v in row) + "\n" for i, row in enumerate(table)
    )
    (root / "list_attr_celeba.txt").write_text(f"{count}\nBright Male Smiling\n{rows}")
    return root

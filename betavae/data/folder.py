"""Any folder of images, read recursively (cat faces, your own photos), through the decoded cache.

``ImageFolderDataModule`` is also the base of the other file-backed datasets (CelebA, Stanford Cars,
batik): they change which files are read (``list_files``), how a file becomes rows (``preprocessing``,
``build_rows``) or the split, and inherit the cache, the bad-file handling and the layout errors.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image, ImageOps
from torchvision.transforms.v2 import functional as TF

from betavae.data.bad_files import check_bad_files
from betavae.data.base import ImageDataModule
from betavae.data.cache import (
    CachedImageDataset,
    CacheEntry,
    DecodedCache,
    decode_files,
    load_or_build,
)
from betavae.data.cache_keys import cache_folder, fingerprint, writable_cache_dir
from betavae.errors import ConfigError, MissingFileError

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff", ".gif", ".ppm", ".pgm")
ARCHIVE_EXTENSIONS = (".zip", ".tar", ".gz", ".tgz", ".7z", ".rar")


def layout_help(root: Path, extensions: Sequence[str]) -> str:
    return (
        "Expected layout: image files anywhere under the root folder, e.g.\n"
        f"  {root}/\n"
        f"    000001.jpg\n"
        f"    000002.jpg\n"
        f"    some_subfolder/000003.png\n"
        f"with extensions {', '.join(extensions)} (case-insensitive)."
    )


def walk_files(root: Path, unreadable: list[tuple[str, str]] | None = None) -> list[Path]:
    """Every file under ``root``, recursively (symbolic links to folders are not followed, as ``rglob``).

    A subfolder that cannot be listed (``chmod 000``) is not left out silently: it is appended to
    ``unreadable`` as (path relative to ``root``, reason), like an unreadable file.
    """
    files = []

    def failed(err: OSError) -> None:
        if unreadable is not None and err.filename is not None:
            where = Path(err.filename).relative_to(root).as_posix() if Path(err.filename) != root else "."
            unreadable.append((f"{where}/", f"{type(err).__name__}: {err.strerror}: a folder that cannot be listed"))

    for folder, _, names in os.walk(root, onerror=failed):
        files += [Path(folder) / name for name in names]
    return files


def find_images(
    root: str | Path,
    extensions: Sequence[str] = IMAGE_EXTENSIONS,
    layout: str | None = None,
    unreadable: list[tuple[str, str]] | None = None,
) -> list[Path]:
    """Every file under ``root`` (recursively) with an image extension, sorted by path.

    Args:
        root: The folder.
        extensions: File extensions taken as images (case-insensitive).
        layout: The expected layout shown in errors; ``None`` for the generic one.
        unreadable: Where subfolders that cannot be listed are appended (relative path, reason).

    Raises:
        FileNotFoundError: ``root`` does not exist, is not a folder, or holds no image file; the
            message names the path and shows the expected layout.
    """
    root = Path(root).expanduser()
    extensions = tuple(e.lower() for e in extensions)
    layout = layout or layout_help(root, extensions)
    where = str(root) if root.is_absolute() else f"{root} ({root.absolute()})"
    if not root.exists():
        raise MissingFileError(f"image folder {where} does not exist.\n{layout}")
    if not root.is_dir():
        raise MissingFileError(f"image folder {where} is not a folder.\n{layout}")
    if not os.access(root, os.R_OK | os.X_OK):
        raise MissingFileError(f"image folder {where} cannot be read (permission denied).\n{layout}")
    found: list[tuple[str, str]] = []
    every = walk_files(root, found)
    files = sorted(p for p in every if p.suffix.lower() in extensions and p.is_file())
    if unreadable is not None:
        unreadable += found
    if not files:
        others = sorted(p.relative_to(root) for p in every if p.is_file())
        seen = (
            f"it holds {len(others)} other file(s), e.g. {', '.join(map(str, others[:3]))}"
            if others
            else ("it is empty")
        )
        archives = [str(p) for p in others if p.suffix.lower() in ARCHIVE_EXTENSIONS]
        if archives:
            seen += f" (extract the archive {archives[0]} first)"
        raise MissingFileError(f"image folder {root} contains no images: {seen}.\n{layout}")
    return files


def _to_8bit(img: Image.Image) -> Image.Image:
    """16- or 32-bit integer gray images (16-bit PNG/TIFF) → 8-bit gray; other modes unchanged."""
    if not img.mode.startswith("I"):
        return img
    values = np.asarray(img).astype(np.float64)
    if img.mode.startswith("I;16") or values.max(initial=0) > 255:
        values = values / 257.0  # 65535 -> 255
    return Image.fromarray(np.clip(values.round(), 0, 255).astype(np.uint8))  # mode L


def decode_image(path: str | Path, channels: int) -> torch.Tensor:
    """Decode one file at full size into uint8 (channels, H, W): EXIF orientation honoured; grayscale,
    palette, RGBA, CMYK and 16-bit images converted to RGB (or to luma for ``channels=1``)."""
    with Image.open(path) as img:
        img = ImageOps.exif_transpose(img)
        img = _to_8bit(img).convert("RGB" if channels == 3 else "L")
    return TF.pil_to_tensor(img)  # (C, H, W) uint8


def load_image(path: str | Path, channels: int, image_size: int, crop_size: int | None = None) -> torch.Tensor:
    """Decode one file into uint8 (channels, image_size, image_size), as the study prepares images.

    ``decode_image``, then an optional center crop of ``crop_size`` source pixels (the study's CelebA:
    148; an image smaller than that is first resized up so that its shorter side is ``crop_size``),
    a resize of the shorter side to ``image_size`` (antialiased, also upwards for small images), and a
    center crop to ``image_size`` x ``image_size``.
    """
    tensor = decode_image(path, channels)  # (C, H, W)
    if crop_size is not None:
        if min(tensor.shape[-2:]) < crop_size:
            tensor = TF.resize(tensor, crop_size, antialias=True)
        tensor = TF.center_crop(tensor, [crop_size, crop_size])
    tensor = TF.resize(tensor, image_size, antialias=True)
    return TF.center_crop(tensor, [image_size, image_size])


def _decode_rows(path: Path, channels: int, image_size: int, crop_size: int | None) -> np.ndarray:
    return load_image(path, channels, image_size, crop_size).numpy()[None]  # (1, C, S, S)


class ImageFolderDataModule(ImageDataModule):
    """Every image under ``root``, recursively, in sorted path order (so the seeded split is stable).

    The first setup decodes every image once into the decoded cache (in ``num_workers`` processes);
    later epochs and later runs read uint8 rows from it. Unreadable files (corrupt, truncated, not an
    image) are skipped, counted and listed once (a warning, and ``bad_images.txt`` in the run
    directory); more than ``max_bad_fraction`` of them stops setup with an error. A missing or empty
    ``root`` fails at setup, before training, naming the path and the layout. ``dataset_files()``
    gives the source file of every dataset index.

    Args:
        root: The image folder, e.g. ``data/cats``.
        crop_size: Center crop in source pixels before resizing; ``None`` for none (CelebA: 148).
        extensions: File extensions taken as images.
        cache_dir: Folder of the decoded cache; ``None``: ``$BETAVAE_CACHE_DIR``, else
            ``$XDG_CACHE_HOME/betavae`` or ``~/.cache/betavae``. About 12 KB per 64x64 RGB image.
        max_bad_fraction: Largest fraction of unreadable image files that is skipped with a warning.
        **kwargs: ``ImageDataModule`` arguments (image size, channels, batch size, split, ...).
    """

    def __init__(
        self,
        root: str,
        crop_size: int | None = None,
        extensions: Sequence[str] = IMAGE_EXTENSIONS,
        cache_dir: str | None = None,
        max_bad_fraction: float = 0.01,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        if crop_size is not None and crop_size < 1:
            raise ConfigError(f"crop_size must be a positive number of pixels or None, got {crop_size}")
        if not 0.0 <= max_bad_fraction <= 1.0:
            raise ConfigError(f"max_bad_fraction must be in [0, 1], got {max_bad_fraction}")
        self.root = Path(root).expanduser()
        self.crop_size = crop_size
        self.extensions = tuple(extensions)
        self.cache_dir = Path(cache_dir).expanduser() if cache_dir else None
        self.max_bad_fraction = max_bad_fraction
        self.cache_entry: CacheEntry | None = None
        self.unreadable: list[tuple[str, str]] = []  # subfolders that cannot be listed, counted as bad files

    # ----------------------------------------------------------------- what a dataset changes
    def image_root(self) -> Path:
        """The folder the image paths are relative to."""
        return self.root

    def layout(self) -> str:
        """The expected layout, shown in every error about the folder."""
        return layout_help(self.image_root(), self.extensions)

    def list_files(self) -> list[Path]:
        """The source files, sorted (subfolders that cannot be listed go to ``self.unreadable``); raises
        ``FileNotFoundError`` naming the path and layout."""
        self.unreadable = []
        return find_images(self.image_root(), self.extensions, self.layout(), self.unreadable)

    def preprocessing(self) -> dict[str, Any]:
        """Everything that decides the decoded rows (part of the cache key)."""
        return {
            "kind": "image",
            "channels": self.num_channels,
            "image_size": self.image_size,
            "crop_size": self.crop_size,
        }

    def build_rows(
        self, files: Sequence[Path]
    ) -> tuple[Iterable[tuple[int, np.ndarray | None, str | None]], int, tuple[int, int, int]]:
        """(results, max_rows, row_shape) for the cache: each file decoded into one row, in parallel."""
        decode = functools.partial(
            _decode_rows, channels=self.num_channels, image_size=self.image_size, crop_size=self.crop_size
        )
        row_shape = (self.num_channels, self.image_size, self.image_size)
        return decode_files(files, decode, self.num_workers), len(files), row_shape

    def labels(self, entry: CacheEntry) -> torch.Tensor | None:
        """Per-row integer labels for ``"label"``, or ``None``."""
        return None

    def fields(self, entry: CacheEntry) -> dict[str, torch.Tensor]:
        """More per-row tensors for the items, by key (CelebA: ``"attributes"``); none by default."""
        return {}

    # ----------------------------------------------------------------- the cache
    def _cache(self) -> CacheEntry:
        if self.cache_entry is None:
            root = self.image_root()
            files = self.list_files()
            preprocessing = self.preprocessing()
            cache_dir = writable_cache_dir(self.cache_dir)
            cache = DecodedCache(cache_folder(cache_dir, root, preprocessing), fingerprint(files, root), preprocessing)
            self.cache_entry = load_or_build(cache, lambda: self.build_rows(files))
        return self.cache_entry

    def dataset_files(self) -> list[Path]:
        """The source file of every dataset index (after ``setup``)."""
        if self.cache_entry is None:
            raise RuntimeError("call setup() first")
        root = self.image_root()
        return [root / self.cache_entry.sources[i].path for i in self.cache_entry.row_source.tolist()]

    # ----------------------------------------------------------------- Lightning hooks
    def prepare_data(self) -> None:
        """Build the decoded cache (once per node; the other processes wait, then read it)."""
        self._cache()

    def build_dataset(self) -> CachedImageDataset:
        entry = self._cache()
        check_bad_files(entry, self.image_root(), self.max_bad_fraction, self.trainer, self.unreadable)
        return CachedImageDataset(entry.images_path, entry.shape, self.labels(entry), self.fields(entry))

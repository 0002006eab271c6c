"""Factor-grid files (dSprites, 3D Shapes): every combination of discrete factors stored once, in grid order.

Such a file holds ``prod(factor_sizes)`` images; the image of a factor index row is the row whose number is
that row read as a mixed-radix number (``ground_truth.factor_rows``). ``FactorGridDataModule`` is the
shared part of the modules that read them: it finds the file (one clear message when it is missing, naming
the file, where it was looked for, where to put it and where to get it), decodes it once into the project's
decoded cache (``betavae/data/cache.py``: uint8 rows in a memory-mapped file, rebuilt when the file
changes), and offers the ground-truth interface (``GroundTruthData``) over the whole grid plus a training
set of all the images or a seeded ``num_images`` subset, split 75/25 like every other module.

A dataset module says how to read its file's grid (``read_grid``), which rows the cache stores
(``preprocessing``, ``cache_rows``), and how stored rows become images (``reader``).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset
from torchvision.transforms.v2 import functional as TF

from betavae.data.base import ImageDataModule
from betavae.data.cache import CacheEntry, DecodedCache, load_or_build
from betavae.data.cache_keys import cache_folder, fingerprint, writable_cache_dir
from betavae.data.ground_truth import factor_rows, factors_of_rows, uniform_factors
from betavae.errors import ConfigError, DataError, MissingFileError


def to_pixels_of(images: torch.Tensor, image_size: int, channels: int) -> torch.Tensor:
    """Stored images uint8 (n, C0, S0, S0) → the module's uint8 (n, channels, image_size, image_size).

    RGB to one channel with torchvision's ITU-R 601 luma (``rgb_to_grayscale``), one channel to three by
    repeating it, and an antialiased bilinear resize when the size differs.
    """
    if channels == 1 and images.shape[1] == 3:
        images = TF.rgb_to_grayscale(images)  # (n, 1, S0, S0)
    elif channels == 3 and images.shape[1] == 1:
        images = images.expand(-1, 3, -1, -1)
    if images.shape[-1] != image_size or images.shape[-2] != image_size:
        images = TF.resize(images, [image_size, image_size], antialias=True)
    return images.contiguous()


@dataclass(frozen=True)
class FactorGrid:
    """The factors of a grid file: names, number of values of each, and the values (float64, by index)."""

    names: tuple[str, ...]
    sizes: tuple[int, ...]
    values: dict[str, np.ndarray]

    @property
    def num_rows(self) -> int:
        return int(np.prod(self.sizes))


class GridImages:
    """The stored rows of a decoded cache (N, *row_shape), read by grid row number as uint8 images.

    ``decode`` turns stored rows into images (n, C, S, S); here they are stored as images already.
    Picklable (DataLoader workers under ``spawn``): the memory map is opened again in the new process.
    """

    def __init__(self, path: Path, shape: Sequence[int]) -> None:
        self.path = Path(path)
        self.shape = tuple(int(s) for s in shape)
        self._rows: np.memmap | None = None

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "_rows": None}

    @property
    def rows(self) -> np.memmap:
        if self._rows is None:
            self._rows = np.memmap(self.path, dtype=np.uint8, mode="r", shape=self.shape)
        return self._rows

    def decode(self, stored: np.ndarray) -> torch.Tensor:
        """Stored rows (n, *row_shape) → uint8 images (n, C, S, S)."""
        return torch.from_numpy(stored)

    def read(self, rows: np.ndarray) -> torch.Tensor:
        """The images of grid rows (n,), in the given order; the file is read in increasing row order."""
        rows = np.asarray(rows, dtype=np.int64)
        order = np.argsort(rows, kind="stable")
        stored = np.empty((len(rows), *self.shape[1:]), dtype=np.uint8)
        stored[order] = self.rows[rows[order]]  # (n, *row_shape), a copy
        return self.decode(stored)


class FactorGridDataset(Dataset):
    """Images of chosen rows of a factor grid; items ``{"image", "factors", "label"}``; batch reads.

    ``"factors"`` is the (K,) int64 index row, ``"label"`` the index of the ``label_factor`` column (the
    shape), when there is one.
    """

    def __init__(
        self, images: GridImages, rows: np.ndarray, sizes: Sequence[int], label_factor: int | None = None
    ) -> None:
        self.images = images
        self.rows = np.asarray(rows, dtype=np.int64)
        self.factors = torch.from_numpy(factors_of_rows(self.rows, sizes))  # (N, K) int64
        self.label_factor = label_factor

    def __len__(self) -> int:
        return len(self.rows)

    def _item(self, image: torch.Tensor, i: int) -> dict[str, Any]:
        item = {"image": image, "factors": self.factors[i]}
        if self.label_factor is not None:
            item["label"] = int(self.factors[i, self.label_factor])
        return item

    def __getitem__(self, i: int) -> dict[str, Any]:
        return self._item(self.images.read(self.rows[i : i + 1])[0], i)

    def __getitems__(self, indices: Sequence[int]) -> list[dict[str, Any]]:
        indices = list(indices)
        images = self.images.read(self.rows[indices])  # (B, C, S, S)
        return [self._item(image, i) for image, i in zip(images, indices, strict=True)]


class FactorGridDataModule(ImageDataModule):
    """The shared part of dSprites and 3D Shapes: one grid file, its decoded cache, the ground truth.

    Ground truth (``GroundTruthData``) is usable right after construction: the first use of
    ``factor_names``, ``factor_sizes``, ``factor_values`` or ``sample_factors`` reads the grid's factors
    from the file, the first ``images_of`` also opens (or builds) the decoded cache; a missing or broken
    file raises the same error as ``setup``.

    Args:
        root: The folder holding the file, or the file itself.
        num_images: Train and validate on a seeded random subset of this many images (without
            repeats); ``None``: every image of the file.
        seed: Seed of the ``num_images`` subset.
        cache_dir: Folder of the decoded cache; ``None``: ``$BETAVAE_CACHE_DIR``, else
            ``$XDG_CACHE_HOME/betavae`` or ``~/.cache/betavae``.
        flip: Off by default: a mirrored image would no longer match its position and orientation factors.
        **kwargs: ``ImageDataModule`` arguments (image size, channels, batch size, split, ...).
    """

    file_name: str = ""
    dataset_name: str = ""
    urls: tuple[str, ...] = ()
    label_factor_name: str = "shape"
    #: the reader of ``file_name``: built as ``file_class(path)``, with ``grid()`` (and what ``cache_rows`` needs)
    file_class: Any = None

    def __init__(
        self,
        root: str,
        num_images: int | None = None,
        seed: int = 0,
        cache_dir: str | None = None,
        flip: bool = False,
        **kwargs: Any,
    ) -> None:
        super().__init__(flip=flip, **kwargs)
        if num_images is not None and num_images < 2:
            raise ConfigError(f"num_images must be at least 2 (or None for every image), got {num_images}")
        self.root = Path(root).expanduser()
        self.num_images = num_images
        self.seed = seed
        self.cache_dir = Path(cache_dir).expanduser() if cache_dir else None
        self._grid: FactorGrid | None = None
        self._images: GridImages | None = None
        self._file: Any = None

    # ----------------------------------------------------------------- what a dataset module says
    def open_file(self) -> Any:
        """The file's reader (``file_class``), opened once."""
        if self._file is None:
            self._file = self.file_class(self.find_file())
        return self._file

    def read_grid(self, path: Path) -> FactorGrid:
        """The factors of the file, checked to be a complete grid in mixed-radix order."""
        return self.open_file().grid()

    def preprocessing(self) -> dict[str, Any]:
        """Everything that decides the stored rows (part of the cache key)."""
        raise NotImplementedError

    def cache_rows(self, path: Path) -> tuple[Iterator[np.ndarray], tuple[int, ...]]:
        """(stored rows of the file in grid order, in chunks (k, *row_shape) uint8; row_shape)."""
        raise NotImplementedError

    def reader(self, entry: CacheEntry) -> GridImages:
        """Reads the cache's rows as images."""
        return GridImages(entry.images_path, entry.shape)

    # ----------------------------------------------------------------- the file
    def file_path(self) -> Path:
        """The file: ``root`` itself when it is a file or has the file's extension, else ``root / file_name``."""
        if self.root.is_file() or self.root.suffix == Path(self.file_name).suffix:
            return self.root
        return self.root / self.file_name

    def missing_message(self, path: Path) -> str:
        where = str(path) if path.is_absolute() else f"{path} ({path.absolute()})"
        return (
            f"{self.dataset_name}: {self.file_name} not found at {where}.\n"
            f"Put the file there (root may be the folder holding it or the file itself: "
            f"--data.init_args.root /path/to/{self.file_name}). Get it from {' or '.join(self.urls)} "
            f"(downloaded on a machine with internet and copied over; nothing is downloaded here)."
        )

    def find_file(self) -> Path:
        """The file; raises ``FileNotFoundError`` naming it, where it was looked for and where to get it."""
        path = self.file_path()
        if not path.is_file():
            raise MissingFileError(self.missing_message(path))
        return path

    @property
    def grid(self) -> FactorGrid:
        """The factors, read from the file on first use."""
        if self._grid is None:
            self._grid = self.read_grid(self.find_file())
        return self._grid

    # ----------------------------------------------------------------- ground truth
    @property
    def factor_names(self) -> tuple[str, ...]:
        return self.grid.names

    @property
    def factor_sizes(self) -> tuple[int, ...]:
        return self.grid.sizes

    @property
    def factor_values(self) -> dict[str, np.ndarray]:
        """The value of every factor index, as stored in the file: ``factor_values[name][index]``."""
        return self.grid.values

    def sample_factors(self, n: int, rng: np.random.Generator) -> np.ndarray:
        """``n`` factor index rows (n, K) int64, each factor uniform over its values, drawn with ``rng``."""
        return uniform_factors(n, self.factor_sizes, rng)

    def images_of(self, factors: np.ndarray | torch.Tensor) -> torch.Tensor:
        """The images of factor index rows (n, K): uint8 (n, C, S, S), the pixels the module trains on."""
        return self.images().read(factor_rows(factors, self.factor_sizes))

    # ----------------------------------------------------------------- the decoded cache
    def images(self) -> GridImages:
        """Every image of the grid, through the decoded cache (built on first use)."""
        if self._images is None:
            path = self.find_file()
            grid = self.grid
            cache_dir = writable_cache_dir(self.cache_dir)
            preprocessing = self.preprocessing()
            cache = DecodedCache(
                cache_folder(cache_dir, path.parent, {**preprocessing, "file": path.name}),
                fingerprint([path], path.parent),
                preprocessing,
            )

            def build() -> tuple[Iterator[tuple[int, np.ndarray, None]], int, tuple[int, ...]]:
                chunks, row_shape = self.cache_rows(path)
                return ((0, chunk, None) for chunk in chunks), grid.num_rows, row_shape

            entry = load_or_build(cache, build)
            if entry.shape[0] != grid.num_rows:
                raise DataError(f"{path}: the decoded cache holds {entry.shape[0]} images, the grid {grid.num_rows}")
            self._images = self.reader(entry)
        return self._images

    # ----------------------------------------------------------------- Lightning hooks
    def prepare_data(self) -> None:
        """Build the decoded cache (once per node; the other processes wait, then read it)."""
        self.images()

    def training_rows(self) -> np.ndarray:
        """The grid rows trained and validated on: all, or the seeded ``num_images`` subset, sorted."""
        total = self.grid.num_rows
        if self.num_images is None:
            return np.arange(total, dtype=np.int64)
        if self.num_images > total:
            raise DataError(f"num_images={self.num_images}, but {self.find_file()} holds {total} images")
        return np.sort(np.random.default_rng(self.seed).choice(total, self.num_images, replace=False))

    def build_dataset(self) -> FactorGridDataset:
        names = self.factor_names
        label = names.index(self.label_factor_name) if self.label_factor_name in names else None
        return FactorGridDataset(self.images(), self.training_rows(), self.factor_sizes, label)

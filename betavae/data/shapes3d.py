"""3D Shapes (Burgess & Kim 2018): 480,000 rendered 64x64 RGB scenes, every combination of six factors.

The file ``3dshapes.h5`` holds ``images`` (480000, 64, 64, 3) uint8 and ``labels`` (480000, 6) float64,
the factor values: floor_hue 10, wall_hue 10, object_hue 10, scale 8, shape 4 (cube, cylinder, sphere,
capsule), orientation 15, in that order; row ``r`` holds the combination whose indices, read as a
mixed-radix number with bases (10·8·4·15, ..., 4·15, 15, 1), are ``r``. It is read with h5py.

Speed: the h5 file is compressed in chunks, so reading images one by one (or a random batch) decompresses
far more than it returns. The first setup reads the file once, in order, in slabs of whole chunks, and
stores the module's pixels (``image_size``, ``channels``) in the decoded cache (a memory-mapped file:
480,000 x 12 KB = 5.9 GB at 64x64 RGB, 1.5 GB at 32x32 RGB, on disk, paged in as used); training batches
and ``images_of`` read rows of that file. Measured with ``scripts/benchmark_factor_data.py`` on a stand-in
file of 96,000 scenes with h5py's automatic gzip chunks, on 2 busy CPU cores: the cache built in 35 s
(so about 3 minutes for the full file), then ``images_of`` gave 52,000-62,000 images/s and training batches
10,400 images/s, against 8-12 images/s for random batches read straight from the h5 file.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import torch

from betavae.data.grid import FactorGrid, FactorGridDataModule, to_pixels_of
from betavae.data.ground_truth import factors_of_rows
from betavae.errors import DataError

SHAPES3D_FILE = "3dshapes.h5"
SHAPES3D_URLS = ("https://storage.googleapis.com/3d-shapes/3dshapes.h5", "https://github.com/google-deepmind/3d-shapes")
SHAPES3D_FACTORS = ("floor_hue", "wall_hue", "object_hue", "scale", "shape", "orientation")
READ_BYTES = 64 << 20  # about this much image data is read from the file at a time while building the cache
CHUNK_CACHE_BYTES = 256 << 20  # HDF5's chunk cache while reading: holds every chunk a slab touches


class Shapes3DFile:
    """The arrays of a 3D Shapes h5 file, checked (keys, shapes, dtypes); ``images`` is not loaded.

    Raises:
        ValueError: the file is not a readable HDF5 file, lacks a key, or an array has the wrong shape.
    """

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        try:
            with h5py.File(self.path, "r") as f:
                missing = [key for key in ("images", "labels") if key not in f]
                if missing:
                    raise DataError(
                        f"{self.path} lacks the dataset(s) {', '.join(missing)} (it has {', '.join(sorted(f))}); "
                        f"expected images and labels: is it {SHAPES3D_FILE}?"
                    )
                images, labels = f["images"], f["labels"]
                self.shape, dtype = tuple(images.shape), images.dtype
                self.labels = np.asarray(labels[()])
        except OSError as err:
            raise DataError(
                f"{self.path} is not a readable HDF5 file ({err}): truncated or not 3D Shapes; "
                f"download {SHAPES3D_FILE} again from {SHAPES3D_URLS[0]}"
            ) from err
        if dtype != np.uint8 or len(self.shape) != 4 or self.shape[1] != self.shape[2] or self.shape[3] != 3:
            raise DataError(f"{self.path}: images is {dtype} {self.shape}; expected uint8 (N, 64, 64, 3)")
        if self.labels.shape != (self.shape[0], len(SHAPES3D_FACTORS)) or self.labels.dtype.kind not in "fiu":
            raise DataError(
                f"{self.path}: labels is {self.labels.dtype} {self.labels.shape}; expected ({self.shape[0]}, "
                f"{len(SHAPES3D_FACTORS)}) numbers for the {self.shape[0]} images, one column per factor "
                f"{SHAPES3D_FACTORS}"
            )

    def grid(self) -> FactorGrid:
        """The factor grid of the labels, checked: every combination once, in mixed-radix order.

        Raises:
            ValueError: the number of rows is not the product of the numbers of values, or a row's labels
                are not the values of its grid position.
        """
        labels = self.labels.astype(np.float64)
        sizes = tuple(len(np.unique(labels[:, k].round(6))) for k in range(labels.shape[1]))
        if int(np.prod(sizes)) != len(labels):
            raise DataError(
                f"{self.path}: labels take {' x '.join(map(str, sizes))} = {int(np.prod(sizes))} combinations of "
                f"values, but there are {len(labels)} images; the file is not a complete 3D Shapes grid"
            )
        factors = factors_of_rows(np.arange(len(labels)), sizes)  # (N, 6): each row's grid position
        values = {}
        for k, name in enumerate(SHAPES3D_FACTORS):
            stride = int(np.prod(sizes[k + 1 :]))
            grid_values = labels[np.arange(sizes[k]) * stride, k]  # the rows where only factor k moves
            wrong = ~np.isclose(labels[:, k], grid_values[factors[:, k]], rtol=0, atol=1e-6)
            if wrong.any():
                row = int(np.argmax(wrong))
                raise DataError(
                    f"{self.path}: row {row} has {name} = {labels[row, k]:g}, but its grid position "
                    f"{factors[row].tolist()} has {grid_values[factors[row, k]]:g}: the rows are not in "
                    f"mixed-radix order of {SHAPES3D_FACTORS}"
                )
            values[name] = grid_values
        return FactorGrid(SHAPES3D_FACTORS, sizes, values)

    def images(self, image_size: int, channels: int) -> Iterator[np.ndarray]:
        """Every image in order, as the module's pixels, in slabs (k, channels, image_size, image_size).

        Raises:
            ValueError: the file cannot be read (truncated or corrupt chunk).
        """
        try:
            with h5py.File(self.path, "r", rdcc_nbytes=CHUNK_CACHE_BYTES) as f:
                images = f["images"]
                per_chunk = images.chunks[0] if images.chunks else 1
                row_bytes = int(np.prod(self.shape[1:]))
                step = per_chunk * max(1, READ_BYTES // (row_bytes * per_chunk))  # whole chunks per read
                for start in range(0, self.shape[0], step):
                    slab = torch.from_numpy(images[start : start + step]).permute(0, 3, 1, 2)  # (k, 3, S0, S0)
                    yield to_pixels_of(slab, image_size, channels).numpy()
        except OSError as err:
            raise DataError(
                f"{self.path}: cannot read images ({err}); the file is truncated or corrupt: "
                f"download {SHAPES3D_FILE} again from {SHAPES3D_URLS[0]}"
            ) from err


class Shapes3DDataModule(FactorGridDataModule):
    """3D Shapes: 480,000 rendered 64x64 RGB scenes of six factors, with their ground truth.

    Factors (``factor_names``): floor_hue 10, wall_hue 10, object_hue 10, scale 8, shape 4, orientation
    15; batches carry ``"factors"`` (B, 6) int64 indices and ``"label"``, the shape. ``factor_values`` are
    the file's labels. Pixels: the file's RGB, converted to luma for ``channels=1`` and resized
    (antialiased) when ``image_size`` is not 64. Ground truth (``GroundTruthData``): ``images_of`` looks
    any combination up. The first setup (or first ``images_of``) decodes the file into the decoded cache
    (see the module docstring: one pass over the file; later runs start at once).

    Args:
        root: The folder holding ``3dshapes.h5``, or that file.
        num_images: Train and validate on a seeded random subset of this many images; ``None``: all 480,000.
        seed: Seed of the ``num_images`` subset.
        cache_dir: Folder of the decoded cache (N x channels x image_size² bytes); ``None``: the default.
        image_size: Height and width (the file's 64; other sizes are resized).
        channels: 3 (RGB), or 1 (luma).
        flip: Off by default: a mirrored scene would no longer match its orientation.
        **kwargs: ``ImageDataModule`` arguments (batch size, workers, split, normalization).
    """

    file_name = SHAPES3D_FILE
    dataset_name = "3D Shapes"
    file_class = Shapes3DFile
    urls = SHAPES3D_URLS

    def __init__(
        self,
        root: str = "data/3dshapes",
        num_images: int | None = None,
        seed: int = 0,
        cache_dir: str | None = None,
        image_size: int = 64,
        channels: int = 3,
        flip: bool = False,
        **kwargs: Any,
    ) -> None:
        super().__init__(
            root=root,
            num_images=num_images,
            seed=seed,
            cache_dir=cache_dir,
            image_size=image_size,
            channels=channels,
            flip=flip,
            **kwargs,
        )

    def preprocessing(self) -> dict[str, Any]:
        return {"kind": "3dshapes", "image_size": self.image_size, "channels": self.num_channels}

    def cache_rows(self, path: Path) -> tuple[Iterator[np.ndarray], tuple[int, ...]]:
        images = self.open_file().images(self.image_size, self.num_channels)
        return images, (self.num_channels, self.image_size, self.image_size)

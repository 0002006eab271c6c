"""dSprites (Matthey et al. 2017): 737,280 binary 64x64 sprites, every combination of five factors.

The standard file ``dsprites_ndarray_co1sh3sc6or40x32y32_64x64.npz`` holds ``imgs`` (737280, 64, 64) uint8
in {0, 1}, ``latents_values`` (737280, 6) float64, ``latents_classes`` (737280, 6) int64 and a pickled
``metadata`` dict, which is never read (no ``allow_pickle``). The latents are color (1 value), shape (3:
square, ellipse, heart), scale (6), orientation (40), pos_x (32), pos_y (32); row ``r`` holds the
combination whose classes, read as a mixed-radix number with bases (..., 40·32·32, 32·32, 32, 1), are ``r``.

Memory: the images as uint8 would take 3.0 GB. They are stored bit-packed (``np.packbits`` along each
image row, 64 pixels in 8 bytes: 377 MB) in the decoded cache, a memory-mapped file shared by every
process and run, and unpacked per batch. The first setup streams ``imgs`` out of the npz chunk by chunk
(never 3 GB at once) to build it; later runs map it at once. Measured with
``scripts/benchmark_factor_data.py`` on a full-size stand-in file, on 2 busy CPU cores: the cache built in
29 s, a later setup took 1.7 s, ``images_of`` gave 190,000-260,000 images/s and training batches 26,000
images/s, with about 140 MB more anonymous memory than before loading.
"""

from __future__ import annotations

import zipfile
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

import numpy as np
import torch

from betavae.data.cache import CacheEntry
from betavae.data.grid import FactorGrid, FactorGridDataModule, GridImages, to_pixels_of
from betavae.data.ground_truth import factor_rows
from betavae.errors import DataError

DSPRITES_FILE = "dsprites_ndarray_co1sh3sc6or40x32y32_64x64.npz"
DSPRITES_URLS = (
    "https://github.com/google-deepmind/dsprites-dataset",
    f"https://github.com/google-deepmind/dsprites-dataset/raw/master/{DSPRITES_FILE}",
)
LATENT_NAMES = ("color", "shape", "scale", "orientation", "pos_x", "pos_y")  # the file's six columns
CHUNK_IMAGES = 8192  # images decompressed at a time while building the cache (32 MB at 64x64)


def _npy_header(f: IO[bytes]) -> tuple[tuple[int, ...], bool, np.dtype]:
    """(shape, fortran_order, dtype) of the ``.npy`` stream ``f``, which is left at the first data byte."""
    version = np.lib.format.read_magic(f)
    if version == (1, 0):
        return np.lib.format.read_array_header_1_0(f)
    return np.lib.format.read_array_header_2_0(f)


class DSpritesFile:
    """The arrays of a dSprites npz, checked, read without ``allow_pickle`` and without loading ``imgs``.

    Raises:
        ValueError: the file is not a readable npz, lacks a key, or an array has the wrong shape or type
            (the message names the file and what is wrong).
    """

    KEYS = ("imgs", "latents_classes", "latents_values")

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        try:
            with zipfile.ZipFile(self.path) as archive:
                members = {name.removesuffix(".npy") for name in archive.namelist()}
                missing = [key for key in self.KEYS if key not in members]
                if missing:
                    raise DataError(
                        f"{self.path} lacks the key(s) {', '.join(missing)} (it has {', '.join(sorted(members))}); "
                        f"expected {', '.join(self.KEYS)} and metadata: is it {DSPRITES_FILE}?"
                    )
                with archive.open("imgs.npy") as f:
                    shape, fortran, dtype = _npy_header(f)
                self.classes = self._read(archive, "latents_classes")
                self.values = self._read(archive, "latents_values")
        except (zipfile.BadZipFile, zlib.error, EOFError, OSError) as err:
            raise DataError(
                f"{self.path} is not a readable npz file ({type(err).__name__}: {err}): truncated or not dSprites; "
                f"download {DSPRITES_FILE} again from {DSPRITES_URLS[0]}"
            ) from err
        if dtype != np.uint8 or fortran or len(shape) != 3 or shape[1] != shape[2]:
            raise DataError(
                f"{self.path}: imgs is {dtype} {shape}{' (Fortran order)' if fortran else ''}; "
                "expected uint8 (N, 64, 64) in C order"
            )
        self.num_images, self.image_size = shape[0], shape[1]
        for key, array, kinds in (("latents_classes", self.classes, "iu"), ("latents_values", self.values, "fiu")):
            if array.shape != (self.num_images, len(LATENT_NAMES)) or array.dtype.kind not in kinds:
                raise DataError(
                    f"{self.path}: {key} is {array.dtype} {array.shape}; expected ({self.num_images}, "
                    f"{len(LATENT_NAMES)}) for the {self.num_images} images, one column per latent {LATENT_NAMES}"
                )

    def _read(self, archive: zipfile.ZipFile, key: str) -> np.ndarray:
        with archive.open(f"{key}.npy") as f:
            return np.lib.format.read_array(f, allow_pickle=False)

    def grid(self) -> FactorGrid:
        """The latents as a factor grid (constant latents, i.e. color, dropped), checked against the rows.

        Raises:
            ValueError: the rows are not every combination once, in mixed-radix order, or a class's value
                differs between rows.
        """
        classes = self.classes.astype(np.int64)
        if len(classes) == 0 or classes.min() < 0:
            raise DataError(f"{self.path}: latents_classes is empty or holds negative classes")
        sizes = tuple(int(s) for s in classes.max(axis=0) + 1)
        wrong = factor_rows(classes, sizes) != np.arange(len(classes))
        if int(np.prod(sizes)) != len(classes) or wrong.any():
            first = int(np.argmax(wrong)) if wrong.any() else len(classes) - 1
            raise DataError(
                f"{self.path}: latents_classes is not the complete {' x '.join(map(str, sizes))} grid in "
                f"mixed-radix order (row {first} has classes {classes[first].tolist()}); the file is not the "
                f"standard {DSPRITES_FILE}"
            )
        values = {}
        for k, name in enumerate(LATENT_NAMES):
            stride = int(np.prod(sizes[k + 1 :]))
            grid_values = self.values[np.arange(sizes[k]) * stride, k].astype(np.float64)  # only factor k moves
            if not np.allclose(self.values[:, k], grid_values[classes[:, k]], rtol=0, atol=1e-9):
                raise DataError(f"{self.path}: latents_values of {name} differ between rows of the same class")
            values[name] = grid_values
        keep = [k for k, size in enumerate(sizes) if size > 1]
        names = tuple(LATENT_NAMES[k] for k in keep)
        return FactorGrid(names, tuple(sizes[k] for k in keep), {name: values[name] for name in names})

    def packed_images(self) -> Iterator[np.ndarray]:
        """``imgs`` in chunks of ``CHUNK_IMAGES``, bit-packed along each image row: (k, 1, S, ceil(S / 8)).

        Raises:
            ValueError: the data is truncated or corrupt, or a pixel is not 0 or 1.
        """
        s = self.image_size
        for start, bits in self._image_chunks():
            if bits.max(initial=0) > 1:
                raise DataError(
                    f"{self.path}: imgs holds pixel values other than 0 and 1 (e.g. {int(bits.max())} in images "
                    f"{start} .. {start + len(bits) - 1}); dSprites images are binary: is it {DSPRITES_FILE}?"
                )
            yield np.packbits(bits, axis=-1).reshape(len(bits), 1, s, -1)  # (k, 1, S, ceil(S / 8))

    def _image_chunks(self) -> Iterator[tuple[int, np.ndarray]]:
        """(first index, images (k, S, S) uint8) streamed out of the archive, ``CHUNK_IMAGES`` at a time."""
        s = self.image_size
        try:
            with zipfile.ZipFile(self.path) as archive, archive.open("imgs.npy") as f:
                _npy_header(f)
                for start in range(0, self.num_images, CHUNK_IMAGES):
                    k = min(CHUNK_IMAGES, self.num_images - start)
                    data = f.read(k * s * s)
                    if len(data) != k * s * s:
                        raise EOFError(f"imgs ends after {start + len(data) // (s * s)} of {self.num_images} images")
                    yield start, np.frombuffer(data, dtype=np.uint8).reshape(k, s, s)
        except (zipfile.BadZipFile, zlib.error, EOFError, OSError) as err:
            raise DataError(
                f"{self.path}: cannot read imgs ({type(err).__name__}: {err}); the file is truncated or corrupt: "
                f"download {DSPRITES_FILE} again from {DSPRITES_URLS[0]}"
            ) from err


class PackedSprites(GridImages):
    """Bit-packed dSprites rows (N, 1, S0, ceil(S0 / 8)) unpacked into uint8 images {0, 255}, then sized."""

    def __init__(self, path: Path, shape: tuple[int, ...], source_size: int, image_size: int, channels: int) -> None:
        super().__init__(path, shape)
        self.source_size = source_size
        self.image_size = image_size
        self.channels = channels

    def decode(self, stored: np.ndarray) -> torch.Tensor:
        pixels = np.unpackbits(stored, axis=-1, count=self.source_size)  # (n, 1, S0, S0) in {0, 1}
        pixels *= 255  # (n, 1, S0, S0) in {0, 255}
        return to_pixels_of(torch.from_numpy(pixels), self.image_size, self.channels)  # (n, C, S, S)


class DSpritesDataModule(FactorGridDataModule):
    """dSprites: 737,280 binary 64x64 sprites of five factors, with their ground truth.

    Factors (``factor_names``): shape 3, scale 6, orientation 40, pos_x 32, pos_y 32 (the file's constant
    color is dropped); batches carry ``"factors"`` (B, 5) int64 indices and ``"label"``, the shape.
    Pixels are 0 or 255 (the file's 0/1 scaled), resized (antialiased) when ``image_size`` is not 64 and
    repeated for ``channels=3``. Ground truth (``GroundTruthData``): ``factor_values`` are the file's
    ``latents_values``; ``images_of`` looks any combination up in the file. The first setup (or first
    ``images_of``) packs the images into the decoded cache (see the module docstring).

    Args:
        root: The folder holding ``dsprites_ndarray_co1sh3sc6or40x32y32_64x64.npz``, or that file.
        num_images: Train and validate on a seeded random subset of this many images; ``None``: all 737,280.
        seed: Seed of the ``num_images`` subset.
        cache_dir: Folder of the decoded cache (377 MB for dSprites); ``None``: the default cache folder.
        image_size: Height and width (the file's 64; other sizes are resized).
        channels: 1, or 3 (the image repeated, for RGB models).
        flip: Off by default: a mirrored sprite would no longer match its pos_x and orientation.
        **kwargs: ``ImageDataModule`` arguments (batch size, workers, split, normalization).
    """

    file_name = DSPRITES_FILE
    dataset_name = "dSprites"
    file_class = DSpritesFile
    urls = DSPRITES_URLS

    def __init__(
        self,
        root: str = "data/dsprites",
        num_images: int | None = None,
        seed: int = 0,
        cache_dir: str | None = None,
        image_size: int = 64,
        channels: int = 1,
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
        return {"kind": "dsprites_packbits"}  # stored at the file's size; sizing happens per batch

    def cache_rows(self, path: Path) -> tuple[Iterator[np.ndarray], tuple[int, ...]]:
        file = self.open_file()
        return file.packed_images(), (1, file.image_size, (file.image_size + 7) // 8)

    def reader(self, entry: CacheEntry) -> PackedSprites:
        source_size = self.open_file().image_size
        return PackedSprites(entry.images_path, entry.shape, source_size, self.image_size, self.num_channels)

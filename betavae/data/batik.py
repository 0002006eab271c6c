"""Batik Megamendung: a few large images cut into a fixed number of seeded random patches, grayscale."""

from __future__ import annotations

import functools
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torchvision.transforms.v2 import functional as TF

from betavae.data.cache import decode_files
from betavae.data.folder import ImageFolderDataModule, decode_image
from betavae.errors import DataError


def patch_counts(num_patches: int, num_sources: int) -> list[int]:
    """Patches per source: as equal as possible, the first ``num_patches % num_sources`` get one more."""
    q, r = divmod(num_patches, num_sources)
    return [q + (i < r) for i in range(num_sources)]


def random_patches(
    sources: Sequence[torch.Tensor], num_patches: int, patch_size: int, image_size: int, seed: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Cut ``num_patches`` random square patches from ``sources`` (uint8 (C, H, W) each), deterministically.

    Source ``i`` gives ``patch_counts(num_patches, len(sources))[i]`` patches (rows grouped by source).
    Each patch is ``patch_size`` source pixels square (a source whose shorter side is smaller is first
    resized up to it), at a position drawn uniformly from a generator seeded with ``seed``, then resized
    to ``image_size`` (antialiased). The draw does not depend on the image sizes: the same sources, count
    and seed give the same patches on every run and machine.

    Returns:
        patches uint8 (num_patches, C, image_size, image_size) and the source index of each (num_patches,).
    """
    if not sources:
        raise DataError("random_patches needs at least one source image")
    if num_patches < 1 or patch_size < 1 or image_size < 1:
        raise DataError(f"need num_patches, patch_size, image_size >= 1; got {num_patches}, {patch_size}, {image_size}")
    where = torch.rand(num_patches, 2, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
    patches, owner, start = [], [], 0
    for i, (source, count) in enumerate(zip(sources, patch_counts(num_patches, len(sources)), strict=True)):
        if count == 0:
            continue
        if min(source.shape[-2:]) < patch_size:
            source = TF.resize(source, patch_size, antialias=True)  # shorter side -> patch_size
        height, width = source.shape[-2:]
        tops = (where[start : start + count, 0] * (height - patch_size + 1)).floor().long().tolist()
        lefts = (where[start : start + count, 1] * (width - patch_size + 1)).floor().long().tolist()
        crops = torch.stack(
            [source[:, t : t + patch_size, x : x + patch_size] for t, x in zip(tops, lefts, strict=True)]
        )  # (count, C, patch_size, patch_size)
        patches.append(TF.resize(crops, [image_size, image_size], antialias=True))
        owner += [i] * count
        start += count
    return torch.cat(patches), torch.tensor(owner, dtype=torch.long)


def _decode_full(path: Path, channels: int) -> np.ndarray:
    return decode_image(path, channels).numpy()  # (C, H, W), full size


class BatikDataModule(ImageFolderDataModule):
    """Batik Megamendung: a small set of large images expanded into ``num_patches`` seeded random patches.

    The study turned 48 images into 2,400 grayscale 64x64 patches. Source images are read from ``root``
    (sorted by path; unreadable ones are skipped and reported like any folder's) and cut by
    ``random_patches``: the same patches on every run. The patches are stored in the decoded cache, so
    the large images are decoded once. ``"label"`` is the index of a patch's source image. As in the
    study, the 75/25 split is over patches, so validation patches come from the training images.

    Args:
        root: The folder of batik images, e.g. ``data/batik``.
        num_patches: Number of patches (the study: 2,400).
        patch_size: Side of a patch in source pixels, before resizing to ``image_size``.
        patch_seed: Seed of the patch positions.
        image_size: Height and width of a patch after resizing (the study: 64).
        channels: 1, grayscale as the study (3 for RGB patches).
        **kwargs: ``ImageFolderDataModule`` and ``ImageDataModule`` arguments.
    """

    def __init__(
        self,
        root: str = "data/batik",
        num_patches: int = 2400,
        patch_size: int = 256,
        patch_seed: int = 0,
        image_size: int = 64,
        channels: int = 1,
        **kwargs: Any,
    ) -> None:
        super().__init__(root=root, crop_size=None, image_size=image_size, channels=channels, **kwargs)
        if num_patches < 2 or patch_size < 1:
            raise DataError(f"need num_patches >= 2 and patch_size >= 1, got {num_patches}, {patch_size}")
        self.num_patches = num_patches
        self.patch_size = patch_size
        self.patch_seed = patch_seed

    def layout(self) -> str:
        return (
            "Expected layout: the batik images (any size, any of the usual formats) in one folder, e.g.\n"
            f"  {self.root}/\n"
            "    megamendung_01.jpg\n"
            "    megamendung_02.png\n"
            f"with extensions {', '.join(self.extensions)} (case-insensitive)."
        )

    def preprocessing(self) -> dict[str, Any]:
        return {
            "kind": "random_patches",
            "channels": self.num_channels,
            "image_size": self.image_size,
            "num_patches": self.num_patches,
            "patch_size": self.patch_size,
            "patch_seed": self.patch_seed,
        }

    def build_rows(
        self, files: Sequence[Path]
    ) -> tuple[Iterable[tuple[int, np.ndarray | None, str | None]], int, tuple[int, int, int]]:
        decode = functools.partial(_decode_full, channels=self.num_channels)
        decoded = list(decode_files(files, decode, self.num_workers))  # [(index, (C, H, W) or None, error)]
        good = [(i, torch.from_numpy(rows)) for i, rows, error in decoded if error is None]
        results: list[tuple[int, np.ndarray | None, str | None]] = [(i, None, e) for i, _, e in decoded if e]
        if good:
            patches, owner = random_patches(
                [image for _, image in good], self.num_patches, self.patch_size, self.image_size, self.patch_seed
            )
            for k, (i, _) in enumerate(good):
                results.append((i, patches[owner == k].numpy(), None))
        results.sort(key=lambda r: r[0])
        return results, self.num_patches, (self.num_channels, self.image_size, self.image_size)

    def labels(self, entry: Any) -> torch.Tensor:
        """The source image of each patch, numbered among the readable sources."""
        return torch.from_numpy(np.unique(entry.row_source, return_inverse=True)[1].astype(np.int64))

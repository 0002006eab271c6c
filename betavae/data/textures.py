"""scikit-image's bundled textures cut into seeded random patches: the batik pipeline, offline."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import skimage.data
import torch
from PIL import Image

from betavae.data.base import ImageDataModule, TensorImageDataset
from betavae.data.batik import random_patches
from betavae.errors import ConfigError, DataError

TEXTURES = ("brick", "grass", "gravel")


def load_texture(name: str, channels: int) -> torch.Tensor:
    """``skimage.data.<name>()`` as uint8 (channels, H, W) (RGB from gray repeats it; gray from RGB is luma).

    Raises:
        ValueError: ``name`` is not an image of ``skimage.data``; the message lists the bundled textures.
    """
    loader = getattr(skimage.data, name, None) if name in skimage.data.__all__ else None
    if not callable(loader) or any(word in name for word in ("download", "file", "data_dir")):
        raise DataError(f"{name!r} is not an image of skimage.data; textures bundled with it: {', '.join(TEXTURES)}")
    array = np.asarray(loader())
    if array.dtype != np.uint8 or array.ndim not in (2, 3):
        raise DataError(f"skimage.data.{name}() is not a uint8 image (got {array.dtype} {array.shape})")
    image = Image.fromarray(array).convert("RGB" if channels == 3 else "L")
    return torch.from_numpy(np.array(image)).reshape(image.height, image.width, channels).permute(2, 0, 1)


class TexturesDataModule(ImageDataModule):
    """Textures bundled with scikit-image (brick, grass, gravel, 512x512) cut into seeded random patches.

    The offline analogue of ``BatikDataModule`` and the test bed of its pipeline: the same
    ``random_patches``, no download, no file. ``"label"`` is the texture's index in ``textures``.

    Args:
        textures: Names of ``skimage.data`` images.
        num_patches: Number of patches.
        patch_size: Side of a patch in source pixels, before resizing to ``image_size``.
        patch_seed: Seed of the patch positions.
        image_size: Height and width of a patch.
        channels: 1 (grayscale, like batik) or 3.
        **kwargs: ``ImageDataModule`` arguments (batch size, split, normalization, ...).
    """

    def __init__(
        self,
        textures: Sequence[str] = TEXTURES,
        num_patches: int = 2400,
        patch_size: int = 128,
        patch_seed: int = 0,
        image_size: int = 64,
        channels: int = 1,
        **kwargs: Any,
    ) -> None:
        super().__init__(image_size=image_size, channels=channels, **kwargs)
        if not textures:
            raise ConfigError(f"textures must name at least one skimage.data image, e.g. {list(TEXTURES)}")
        if num_patches < 2 or patch_size < 1:
            raise DataError(f"need num_patches >= 2 and patch_size >= 1, got {num_patches}, {patch_size}")
        self.textures = tuple(textures)
        self.num_patches = num_patches
        self.patch_size = patch_size
        self.patch_seed = patch_seed

    def build_dataset(self) -> TensorImageDataset:
        sources = [load_texture(name, self.num_channels) for name in self.textures]
        patches, owner = random_patches(sources, self.num_patches, self.patch_size, self.image_size, self.patch_seed)
        return TensorImageDataset(patches, owner)

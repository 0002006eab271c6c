"""Any folder of images, read recursively (CelebA's ``img_align_celeba/``, cat faces, your own photos)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image, ImageOps
from torch.utils.data import Dataset
from torchvision.transforms.v2 import functional as TF

from betavae.data.base import ImageDataModule

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff", ".gif", ".ppm", ".pgm")


def layout_help(root: Path, extensions: Sequence[str]) -> str:
    return (
        "Expected layout: image files anywhere under the root folder, e.g.\n"
        f"  {root}/\n"
        f"    000001.jpg\n"
        f"    000002.jpg\n"
        f"    some_subfolder/000003.png\n"
        f"with extensions {', '.join(extensions)} (case-insensitive)."
    )


def find_images(root: str | Path, extensions: Sequence[str] = IMAGE_EXTENSIONS) -> list[Path]:
    """Every file under ``root`` (recursively) with an image extension, sorted by path.

    Raises:
        FileNotFoundError: ``root`` does not exist, is not a folder, or holds no image file; the
            message names the path and shows the expected layout.
    """
    root = Path(root).expanduser()
    extensions = tuple(e.lower() for e in extensions)
    if not root.exists():
        raise FileNotFoundError(f"image folder {root} does not exist.\n{layout_help(root, extensions)}")
    if not root.is_dir():
        raise FileNotFoundError(f"image folder {root} is not a folder.\n{layout_help(root, extensions)}")
    files = sorted(p for p in root.rglob("*") if p.suffix.lower() in extensions and p.is_file())
    if not files:
        others = sorted(p.relative_to(root) for p in root.rglob("*") if p.is_file())
        seen = (
            f"it holds {len(others)} other file(s), e.g. {', '.join(map(str, others[:3]))}"
            if others
            else ("it is empty")
        )
        raise FileNotFoundError(f"image folder {root} contains no images: {seen}.\n{layout_help(root, extensions)}")
    return files


def _to_8bit(img: Image.Image) -> Image.Image:
    """16- or 32-bit integer gray images (16-bit PNG/TIFF) → 8-bit gray; other modes unchanged."""
    if not img.mode.startswith("I"):
        return img
    values = np.asarray(img).astype(np.float64)
    if img.mode.startswith("I;16") or values.max(initial=0) > 255:
        values = values / 257.0  # 65535 -> 255
    return Image.fromarray(np.clip(values.round(), 0, 255).astype(np.uint8))  # mode L


def load_image(path: str | Path, channels: int, image_size: int, crop_size: int | None = None) -> torch.Tensor:
    """Decode one file into uint8 (channels, image_size, image_size), as the study prepares images.

    EXIF orientation is honoured; grayscale, palette, RGBA, CMYK and 16-bit images are converted to
    RGB (or to luma for ``channels=1``). Then an optional center crop of ``crop_size`` source pixels
    (the study's CelebA: 148), a resize of the shorter side to ``image_size`` (antialiased, also
    upwards for small images), and a center crop to ``image_size`` x ``image_size``.
    """
    with Image.open(path) as img:
        img = ImageOps.exif_transpose(img)
        img = _to_8bit(img).convert("RGB" if channels == 3 else "L")
    tensor = TF.pil_to_tensor(img)  # (C, H, W) uint8
    if crop_size is not None:
        tensor = TF.center_crop(tensor, [crop_size, crop_size])
    tensor = TF.resize(tensor, image_size, antialias=True)
    return TF.center_crop(tensor, [image_size, image_size])


class ImageFileDataset(Dataset):
    """Images decoded from a list of files; items ``{"image": uint8 (C, S, S)}``."""

    def __init__(self, files: Sequence[Path], channels: int, image_size: int, crop_size: int | None) -> None:
        self.files = list(files)
        self.channels = channels
        self.image_size = image_size
        self.crop_size = crop_size

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, i: int) -> dict[str, Any]:
        return {"image": load_image(self.files[i], self.channels, self.image_size, self.crop_size)}


class ImageFolderDataModule(ImageDataModule):
    """Every image under ``root``, recursively, in sorted path order (so the seeded split is stable).

    A missing or empty ``root`` fails at setup, before training, naming the path and the layout.

    Args:
        root: The image folder, e.g. ``data/celeba/img_align_celeba``.
        crop_size: Center crop in source pixels before resizing; ``None`` for none (CelebA: 148).
        extensions: File extensions taken as images.
        **kwargs: ``ImageDataModule`` arguments (image size, channels, batch size, split, ...).
    """

    def __init__(
        self,
        root: str,
        crop_size: int | None = None,
        extensions: Sequence[str] = IMAGE_EXTENSIONS,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.root = Path(root).expanduser()
        self.crop_size = crop_size
        self.extensions = tuple(extensions)

    def build_dataset(self) -> ImageFileDataset:
        files = find_images(self.root, self.extensions)
        return ImageFileDataset(files, self.num_channels, self.image_size, self.crop_size)

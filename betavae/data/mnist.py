"""MNIST and Fashion-MNIST from the standard IDX files (the textbook sets), with their labels."""

from __future__ import annotations

import gzip
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torchvision
from lightning.pytorch.utilities import rank_zero_info
from torch.utils.data import Dataset
from torchvision.transforms.v2 import functional as TF

from betavae.data.base import ImageDataModule, TensorImageDataset
from betavae.errors import ConfigError, DataError, MissingFileError

IDX_FILES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}


def read_idx(path: str | Path) -> np.ndarray:
    """A uint8 IDX file (plain or ``.gz``) as an array of its shape, e.g. (N, 28, 28) or (N,).

    Raises:
        ValueError: not a uint8 IDX file, or its size disagrees with its header; the message names it.
    """
    path = Path(path)
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rb") as f:
            data = f.read()
    except (OSError, EOFError) as err:  # gzip.BadGzipFile is an OSError
        raise DataError(f"{path} could not be read as an IDX file: {err}") from err
    if len(data) < 4 or data[0] != 0 or data[1] != 0 or data[2] != 0x08 or not 1 <= data[3] <= 4:
        raise DataError(
            f"{path} is not a uint8 IDX file: its magic number is {data[:4].hex() or 'missing'}, "
            "expected 00000801 (labels) or 00000803 (images)"
        )
    ndim = data[3]
    header = 4 + 4 * ndim
    shape = tuple(int.from_bytes(data[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim))
    if len(data) != header + int(np.prod(shape)):
        raise DataError(
            f"{path} is truncated or padded: its header says {shape} ({header + int(np.prod(shape))} bytes), "
            f"the file has {len(data)} bytes"
        )
    return np.frombuffer(data, dtype=np.uint8, offset=header).reshape(shape)


class MNISTDataModule(ImageDataModule):
    """MNIST digits from the standard IDX files; ``"label"`` is the class (``classes`` names them).

    The files are looked for in ``root`` and in torchvision's layout ``root/MNIST/raw/``, plain or
    gzip-compressed. The training pair is needed; the ``t10k`` (test) pair is used when present.
    Missing files are downloaded with torchvision when ``download`` is set and the internet is
    reachable; otherwise setup stops with a message saying which files to put where.
    The 28x28 digits get ``padding`` zero pixels on each side (2: 32x32, as the textbook), then are
    resized to ``image_size`` if that differs.

    Args:
        root: The folder of the IDX files.
        download: Download missing files with torchvision (into ``root/MNIST/raw``).
        official_split: Train on the IDX training set, validate and test on the ``t10k`` set; ``False``:
            the study's seeded 75/25 split of all images.
        padding: Zero pixels added on each side of the 28x28 images.
        image_size: Height and width after padding and resizing.
        channels: 1, or 3 (the gray image repeated, for RGB models).
        flip: Off by default: a mirrored digit is not a digit.
        **kwargs: ``ImageDataModule`` arguments (batch size, split, normalization, ...).
    """

    torchvision_class: type[torchvision.datasets.MNIST] = torchvision.datasets.MNIST

    def __init__(
        self,
        root: str = "data/mnist",
        download: bool = True,
        official_split: bool = False,
        padding: int = 2,
        image_size: int = 32,
        channels: int = 1,
        flip: bool = False,
        **kwargs: Any,
    ) -> None:
        super().__init__(image_size=image_size, channels=channels, flip=flip, **kwargs)
        if padding < 0:
            raise ConfigError(f"padding must be >= 0, got {padding}")
        self.root = Path(root).expanduser()
        self.download = download
        self.official_split = official_split
        self.padding = padding
        self.classes = list(self.torchvision_class.classes)
        self.num_train = 0

    @property
    def name(self) -> str:
        return self.torchvision_class.__name__

    def folders(self) -> list[Path]:
        """Where the IDX files are looked for, in order."""
        return [self.root, self.root / self.name / "raw"]

    def find(self, filename: str) -> Path | None:
        for folder in self.folders():
            for candidate in (folder / filename, folder / f"{filename}.gz"):
                if candidate.is_file():
                    return candidate
        return None

    def missing_message(self, missing: list[str], reason: str) -> str:
        urls = ", ".join(f"{self.torchvision_class.mirrors[0]}{name}" for name, _ in self.torchvision_class.resources)
        return (
            f"{self.name}: {reason} {', '.join(missing)} (plain or .gz) in {self.root} or "
            f"{self.root / self.name / 'raw'}.\n"
            f"Expected layout:\n  {self.root}/\n"
            + "".join(f"    {name}.gz\n" for pair in IDX_FILES.values() for name in pair)
            + f"(the t10k pair is optional). Download them on a machine with internet from {urls}, "
            f"or run with --data.init_args.download true where the internet is reachable."
        )

    def files(self) -> dict[str, tuple[Path, Path]]:
        """The (images, labels) IDX files per part: ``train``, and ``test`` when present.

        Raises:
            FileNotFoundError: a needed file is missing (and could not be downloaded); the message says
                which files to put where.
        """
        needed = ["train", "test"] if self.official_split else ["train"]
        if self.download and any(self.find(name) is None for part in needed for name in IDX_FILES[part]):
            self.fetch()
        found = {}
        for part, names in IDX_FILES.items():
            paths = [self.find(name) for name in names]
            missing = [name for name, path in zip(names, paths, strict=True) if path is None]
            if not missing:
                found[part] = (paths[0], paths[1])
            elif part in needed:
                reason = "official_split needs" if part == "test" else "missing"
                raise MissingFileError(self.missing_message(missing, reason))
            elif len(missing) == 1:
                raise MissingFileError(self.missing_message(missing, "half of the test pair is missing:"))
        return found

    def fetch(self) -> None:
        """Download the four IDX files with torchvision into ``root/<name>/raw``."""
        rank_zero_info(f"{self.name}: downloading the IDX files into {self.root / self.name / 'raw'}")
        try:
            for train in (True, False):
                self.torchvision_class(str(self.root), train=train, download=True)
        except Exception as err:  # URLError, RuntimeError, socket errors: all mean "no download"
            reason = f"the download failed ({type(err).__name__}: {err}); put"
            raise MissingFileError(self.missing_message(list(IDX_FILES["train"]), reason)) from err

    def prepare_data(self) -> None:
        """Find the files, downloading them if needed (once per node)."""
        self.files()

    def build_dataset(self) -> TensorImageDataset:
        images, labels = [], []
        for part, (image_file, label_file) in self.files().items():
            x, y = read_idx(image_file), read_idx(label_file)
            if x.ndim != 3 or y.ndim != 1 or len(x) != len(y):
                raise DataError(
                    f"{self.name} {part}: {image_file} holds {x.shape}, {label_file} holds {y.shape}; "
                    "expected images (N, H, W) and N labels"
                )
            images.append(torch.from_numpy(x.copy()))
            labels.append(torch.from_numpy(y.astype(np.int64)))
            if part == "train":
                self.num_train = len(x)
        x = torch.cat(images).unsqueeze(1)  # (N, 1, 28, 28)
        if self.padding:
            x = torch.nn.functional.pad(x, [self.padding] * 4)  # (N, 1, 28 + 2p, 28 + 2p)
        if x.shape[-1] != self.image_size or x.shape[-2] != self.image_size:
            x = TF.resize(x, [self.image_size, self.image_size], antialias=True)
        if self.num_channels == 3:
            x = x.expand(-1, 3, -1, -1).contiguous()
        return TensorImageDataset(x, torch.cat(labels))

    def split(self, dataset: Dataset) -> tuple[list[int], list[int], list[int] | None]:
        if not self.official_split:
            return super().split(dataset)
        test = list(range(self.num_train, len(dataset)))
        return list(range(self.num_train)), test, test


class FashionMNISTDataModule(MNISTDataModule):
    """Fashion-MNIST (Zalando's 28x28 clothes, 10 classes) from the standard IDX files.

    As ``MNISTDataModule``, with torchvision's layout ``root/FashionMNIST/raw/``.

    Args:
        root: The folder of the IDX files.
        **kwargs: ``MNISTDataModule`` arguments.
    """

    torchvision_class = torchvision.datasets.FashionMNIST

    def __init__(self, root: str = "data/fashion_mnist", **kwargs: Any) -> None:
        super().__init__(root=root, **kwargs)

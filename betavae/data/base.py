"""The base DataModule: seeded train/validation split, normalization, the study's transforms, loaders.

A dataset module implements ``build_dataset()``: a map-style dataset whose items are dicts with an
``"image"`` uint8 tensor (C, image_size, image_size), already decoded, cropped and resized, plus
optional ``"label"`` / ``"factors"``. This base adds ``"index"`` (the item's position in that dataset),
splits it, and applies the per-epoch transforms on the uint8 tensors: RandomHorizontalFlip (training
only), conversion to float in [0, 1], and Normalize.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import lightning as L
import torch
from torch.utils.data import DataLoader, Dataset
from torchvision.transforms import v2

from betavae.normalization import check_stats, imagenet_stats


def split_indices(n: int, val_fraction: float, seed: int) -> tuple[list[int], list[int]]:
    """A seeded random split of ``range(n)`` into disjoint, covering (train, validation) index lists.

    The validation part has ``round(n * val_fraction)`` items, at least one of each part.
    The same ``n``, fraction and seed always give the same split, on every machine and rank.
    """
    if not 0.0 < val_fraction < 1.0:
        raise ValueError(f"val_fraction must be in (0, 1), got {val_fraction}")
    if n < 2:
        raise ValueError(f"need at least 2 items to make a train/validation split, got {n}")
    n_val = min(max(round(n * val_fraction), 1), n - 1)
    order = torch.randperm(n, generator=torch.Generator().manual_seed(seed)).tolist()
    return sorted(order[n_val:]), sorted(order[:n_val])


class TransformedSubset(Dataset):
    """Items ``indices`` of ``dataset`` with ``transform`` applied to their ``"image"``."""

    def __init__(self, dataset: Dataset, indices: Sequence[int], transform: v2.Transform) -> None:
        self.dataset = dataset
        self.indices = list(indices)
        self.transform = transform

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, i: int) -> dict[str, Any]:
        index = self.indices[i]
        item = dict(self.dataset[index])
        item["image"] = self.transform(item["image"])  # uint8 (C, H, W) -> float (C, H, W), normalized
        item["index"] = index
        return item


class ImageDataModule(L.LightningDataModule):
    """Shared split, normalization, transforms and loaders for image datasets.

    Args:
        image_size: Height and width of the square images the model sees.
        channels: 1 (grayscale) or 3 (RGB).
        batch_size: Images per batch (per process under DDP).
        num_workers: DataLoader worker processes.
        val_fraction: Fraction of the items held out for validation (the study: 0.25).
        split_seed: Seed of the train/validation split; the same seed gives the same split.
        flip: RandomHorizontalFlip on the training split (the study's augmentation).
        mean: Normalization mean per channel; ``None`` means ImageNet's (for 1 channel, its luma
            combination: see ``betavae.normalization``).
        std: Normalization std per channel; ``None`` as ``mean``.
        pin_memory: Pin host memory for faster copies to a GPU.
    """

    def __init__(
        self,
        image_size: int = 64,
        channels: int = 3,
        batch_size: int = 64,
        num_workers: int = 0,
        val_fraction: float = 0.25,
        split_seed: int = 42,
        flip: bool = True,
        mean: Sequence[float] | None = None,
        std: Sequence[float] | None = None,
        pin_memory: bool = True,
    ) -> None:
        super().__init__()
        # mean/std are linked into the model and logged with its hyperparameters, in the values in use
        self.save_hyperparameters(ignore=["mean", "std"])
        if channels not in (1, 3):
            raise ValueError(f"channels must be 1 (grayscale) or 3 (RGB), got {channels}")
        if image_size < 1 or batch_size < 1 or num_workers < 0:
            raise ValueError(
                f"need image_size >= 1, batch_size >= 1, num_workers >= 0; "
                f"got {image_size}, {batch_size}, {num_workers}"
            )
        if not 0.0 < val_fraction < 1.0:
            raise ValueError(f"val_fraction must be in (0, 1), got {val_fraction}")
        default_mean, default_std = imagenet_stats(channels)
        self.image_size = image_size
        self.num_channels = channels
        self.mean = tuple(float(m) for m in (default_mean if mean is None else mean))
        self.std = tuple(float(s) for s in (default_std if std is None else std))
        check_stats(channels, self.mean, self.std)
        self.batch_size = batch_size
        self.num_workers = num_workers
        self.val_fraction = val_fraction
        self.split_seed = split_seed
        self.pin_memory = pin_memory

        normalize = [v2.ToDtype(torch.float32, scale=True), v2.Normalize(self.mean, self.std)]
        self.train_transform = v2.Compose(([v2.RandomHorizontalFlip()] if flip else []) + normalize)
        self.val_transform = v2.Compose(normalize)
        self.dataset: Dataset | None = None
        self.train_set: TransformedSubset | None = None
        self.val_set: TransformedSubset | None = None

    # ----------------------------------------------------------------- the dataset's part
    def build_dataset(self) -> Dataset:
        """The whole dataset; items are dicts with ``"image"``: uint8 (channels, image_size, image_size)."""
        raise NotImplementedError

    # ----------------------------------------------------------------- Lightning hooks
    def setup(self, stage: str | None = None) -> None:
        if self.dataset is None:
            self.dataset = self.build_dataset()
            train_idx, val_idx = split_indices(len(self.dataset), self.val_fraction, self.split_seed)
            self.train_set = TransformedSubset(self.dataset, train_idx, self.train_transform)
            self.val_set = TransformedSubset(self.dataset, val_idx, self.val_transform)

    def _loader(self, dataset: Dataset, train: bool) -> DataLoader:
        return DataLoader(
            dataset,
            batch_size=self.batch_size,
            shuffle=train,
            # a last training batch of one image would break BatchNorm; keep tiny sets whole
            drop_last=train and len(dataset) > self.batch_size,
            num_workers=self.num_workers,
            pin_memory=self.pin_memory and torch.cuda.is_available(),
            persistent_workers=self.num_workers > 0,
        )

    def train_dataloader(self) -> DataLoader:
        return self._loader(self.train_set, train=True)

    def val_dataloader(self) -> DataLoader:
        return self._loader(self.val_set, train=False)

    def test_dataloader(self) -> DataLoader:
        """The validation split: the study has no separate test split."""
        return self._loader(self.val_set, train=False)

    def predict_dataloader(self) -> DataLoader:
        """The validation split, in order, without augmentation."""
        return self._loader(self.val_set, train=False)

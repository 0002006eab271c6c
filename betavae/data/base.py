"""The base DataModule: seeded train/validation split, normalization, the study's augmentation, loaders.

A dataset module implements ``build_dataset()``: a map-style dataset whose items are dicts with an
``"image"`` uint8 tensor (C, image_size, image_size), already decoded, cropped and resized, plus
optional ``"label"`` / ``"factors"`` / ``"attributes"``. This base adds ``"index"`` (the item's position
in that dataset) and splits it.

Data path: DataLoader workers hand over **uint8** batches (a quarter of the bytes of float32 cross the
worker IPC and the host-to-device copy); the per-epoch work runs after the transfer, on the GPU when
there is one, in ``on_after_batch_transfer`` (``prepare_batch``): RandomHorizontalFlip (training only, a
flip drawn per image), conversion to float in [0, 1] and Normalize, with the same arithmetic as
torchvision's per-image ``v2.ToDtype(float32, scale=True)`` and ``v2.Normalize``. Code that iterates a
loader outside a Lightning loop calls ``prepare_batch`` (or ``eval_batches``) itself.

Speed: the loaders read a batch at a time (``IndexedSubset.__getitems__``, through the dataset's own
``__getitems__`` where it has one, as ``TensorImageDataset`` and the decoded cache do) and hand it over
collated as NumPy arrays: a worker's batch of 64 uint8 images (768 KiB) crosses to the main process as one
pickled buffer through the worker's pipe, about twice as fast as a shared-memory tensor per batch (one
shared-memory file and descriptor per tensor); the loader (``ArrayBatchLoader``) turns the arrays into
tensors in the main process without copying.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

import lightning as L
import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, default_collate
from torchvision.transforms.v2 import functional as TF

from betavae.errors import ConfigError, DataError
from betavae.normalization import check_stats, imagenet_stats

MIN_TRAIN_IMAGES = 2  # a training batch of one image breaks BatchNorm


def split_indices(n: int, val_fraction: float, seed: int) -> tuple[list[int], list[int]]:
    """A seeded random split of ``range(n)`` into disjoint, covering (train, validation) index lists.

    The validation part has ``round(n * val_fraction)`` items, at least one of each part.
    The same ``n``, fraction and seed always give the same split, on every machine and rank.
    """
    if not 0.0 < val_fraction < 1.0:
        raise ConfigError(f"val_fraction must be in (0, 1), got {val_fraction}")
    if n < 2:
        raise DataError(f"need at least 2 items to make a train/validation split, got {n}")
    n_val = min(max(round(n * val_fraction), 1), n - 1)
    order = torch.randperm(n, generator=torch.Generator().manual_seed(seed)).tolist()
    return sorted(order[n_val:]), sorted(order[:n_val])


def collate_arrays(items: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """The items of a batch collated into NumPy arrays, one per key: tensors stacked (B, ...), numbers into
    (B,) arrays (int64 for integers, as ``default_collate`` would give them); anything else as a list."""
    out: dict[str, Any] = {}
    for key in items[0]:
        values = [item[key] for item in items]
        if isinstance(values[0], torch.Tensor):
            out[key] = np.stack([v.numpy() for v in values])
        elif isinstance(values[0], np.ndarray):
            out[key] = np.stack(values)
        elif isinstance(values[0], (bool, int, float, np.number)):
            out[key] = np.asarray(values, dtype=np.int64 if isinstance(values[0], (int, np.integer)) else None)
        else:
            out[key] = values
    return out


def as_tensors(batch: dict[str, Any]) -> dict[str, Any]:
    """A batch with its NumPy arrays as tensors (``torch.from_numpy``: no copy)."""
    return {k: torch.from_numpy(v) if isinstance(v, np.ndarray) else v for k, v in batch.items()}


class ArrayBatchLoader(DataLoader):
    """A ``DataLoader`` whose workers hand over batches of NumPy arrays (``collate_arrays``), turned into
    tensors in the main process as they arrive (``as_tensors``, no copy): what it yields is tensors, like any
    loader's. Lightning re-creates it for DDP (a distributed sampler) like a plain ``DataLoader``."""

    def __iter__(self) -> Iterator[Any]:
        for batch in super().__iter__():
            yield as_tensors(batch) if isinstance(batch, dict) else batch


def normalize_images(
    images: torch.Tensor, mean: Sequence[float], std: Sequence[float], flip: bool = False
) -> torch.Tensor:
    """uint8 images (B, C, H, W) → float32 normalized, on their device; with ``flip`` each image is flipped
    horizontally with probability 1/2 (drawn per image from the device's generator).

    The arithmetic of torchvision's ``v2.ToDtype(torch.float32, scale=True)`` (``.to(float32)`` then
    ``.mul_(1 / 255)``) and ``v2.Normalize`` (``(x - mean) / std``), so the result equals the per-image
    transforms bit for bit. Float images are returned as they are (already prepared).
    """
    if images.dtype != torch.uint8:
        return images
    x = images.to(torch.float32).mul_(1.0 / 255)  # (B, C, H, W) in [0, 1]
    if flip:
        flipped = torch.rand(len(x), device=x.device) < 0.5  # (B,)
        x = torch.where(flipped.view(-1, 1, 1, 1), x.flip(-1), x)
    return TF.normalize(x, list(mean), list(std), inplace=True)


class Batch(list):
    """The items of one batch (a list, as a DataLoader's collate function expects) that also carries them
    already collated (``collate_arrays``) in ``collated``; ``collate`` returns that without copying."""

    collated: dict[str, Any] | None = None


def collate(items: list[dict[str, Any]]) -> dict[str, Any]:
    """``items.collated`` for a ``Batch`` that has it, else ``default_collate(items)``."""
    collated = getattr(items, "collated", None)
    return collated if collated is not None else default_collate(items)


class TensorImageDataset(Dataset):
    """Images held in memory: uint8 (N, C, S, S) and optional integer labels (N,); batch reads.

    Items are ``{"image": uint8 (C, S, S)}`` plus ``"label"`` when ``labels`` is given.
    """

    def __init__(self, images: torch.Tensor, labels: torch.Tensor | None = None) -> None:
        if images.dtype != torch.uint8 or images.ndim != 4:
            raise ConfigError(f"images must be uint8 (N, C, S, S), got {images.dtype} {tuple(images.shape)}")
        if labels is not None and len(labels) != len(images):
            raise DataError(f"{len(labels)} labels for {len(images)} images")
        self.images = images
        self.labels = labels

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, i: int) -> dict[str, Any]:
        item = {"image": self.images[i]}
        if self.labels is not None:
            item["label"] = int(self.labels[i])
        return item

    def __getitems__(self, indices: Sequence[int]) -> list[dict[str, Any]]:
        images = self.images[torch.as_tensor(indices, dtype=torch.long)]  # (B, C, S, S)
        if self.labels is None:
            return [{"image": image} for image in images]
        labels = self.labels[torch.as_tensor(indices, dtype=torch.long)].tolist()
        return [{"image": image, "label": label} for image, label in zip(images, labels, strict=True)]


class IndexedSubset(Dataset):
    """Items ``indices`` of ``dataset``, each with its ``"index"`` in ``dataset``; images stay uint8."""

    def __init__(self, dataset: Dataset, indices: Sequence[int]) -> None:
        self.dataset = dataset
        self.indices = list(indices)

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, i: int) -> dict[str, Any]:
        index = self.indices[i]
        return {**self.dataset[index], "index": index}

    def __getitems__(self, positions: Sequence[int]) -> Batch:
        """A batch of items, read together when the dataset allows it, and collated once."""
        indices = [self.indices[i] for i in positions]
        if hasattr(self.dataset, "__getitems__"):
            items = self.dataset.__getitems__(indices)
        else:
            items = [self.dataset[i] for i in indices]
        batch = Batch({**item, "index": index} for item, index in zip(items, indices, strict=True))
        batch.collated = collate_arrays(batch)  # "image": uint8 (B, C, H, W) NumPy
        return batch


class ImageDataModule(L.LightningDataModule):
    """Shared split, normalization, augmentation and loaders for image datasets.

    Loaders yield uint8 batches; ``on_after_batch_transfer`` (Lightning calls it after moving a batch to
    the device) flips (training only), converts and normalizes them there (``prepare_batch``).

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
            raise ConfigError(f"channels must be 1 (grayscale) or 3 (RGB), got {channels}")
        if image_size < 1 or batch_size < 1 or num_workers < 0:
            raise DataError(
                f"need image_size >= 1, batch_size >= 1, num_workers >= 0; "
                f"got {image_size}, {batch_size}, {num_workers}"
            )
        if not 0.0 < val_fraction < 1.0:
            raise ConfigError(f"val_fraction must be in (0, 1), got {val_fraction}")
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
        self.flip = flip
        self.dataset: Dataset | None = None
        self.train_set: IndexedSubset | None = None
        self.val_set: IndexedSubset | None = None
        self.test_set: IndexedSubset | None = None

    # ----------------------------------------------------------------- the dataset's part
    def build_dataset(self) -> Dataset:
        """The whole dataset; items are dicts with ``"image"``: uint8 (channels, image_size, image_size)."""
        raise NotImplementedError

    def split(self, dataset: Dataset) -> tuple[list[int], list[int], list[int] | None]:
        """(train, validation, test) indices into ``dataset``; test ``None`` means "the validation split".

        The default is the study's seeded random split (``val_fraction``, ``split_seed``) and no test
        split; a dataset with an official partition may override it.
        """
        train, val = split_indices(len(dataset), self.val_fraction, self.split_seed)
        return train, val, None

    def check_split_sizes(self, total: int, train: int, val: int) -> None:
        """Refuse a split that cannot train: fewer than ``MIN_TRAIN_IMAGES`` training images (a batch of one
        image breaks BatchNorm, which normalizes over the batch) or no validation image.

        Raises:
            DataError: names the dataset, the counts and the minimum number of images.
        """
        if train >= MIN_TRAIN_IMAGES and val >= 1:
            return
        where = f" in {self.root}" if getattr(self, "root", None) is not None else ""
        needed = next(n for n in range(2, 10_000) if n - min(max(round(n * self.val_fraction), 1), n - 1) >= 2)
        raise DataError(
            f"{type(self).__name__}: {total} usable image(s){where} leave {train} for training and {val} for "
            f"validation; training needs at least {MIN_TRAIN_IMAGES} images (batches of one image break "
            f"BatchNorm), so with val_fraction {self.val_fraction} the data needs at least {needed} images. "
            "Add images, or lower --data.init_args.val_fraction."
        )

    # ----------------------------------------------------------------- Lightning hooks
    def setup(self, stage: str | None = None) -> None:
        if self.dataset is None:
            self.dataset = self.build_dataset()
            n = len(self.dataset)
            if n < MIN_TRAIN_IMAGES + 1 and stage in (None, "fit"):  # too few to train: say so before splitting
                n_val = min(max(round(n * self.val_fraction), 1), n - 1) if n >= 2 else 0
                self.check_split_sizes(n, n - n_val, n_val)
            train_idx, val_idx, test_idx = self.split(self.dataset)
            self.train_set = IndexedSubset(self.dataset, train_idx)
            self.val_set = IndexedSubset(self.dataset, val_idx)
            self.test_set = self.val_set if test_idx is None else IndexedSubset(self.dataset, test_idx)
        if stage in (None, "fit"):  # training needs batches of more than one image; evaluation does not
            self.check_split_sizes(len(self.dataset), len(self.train_set), len(self.val_set))

    def prepare_batch(self, batch: dict[str, Any], train: bool = False) -> dict[str, Any]:
        """A loader's batch made ready for a model: ``"image"`` uint8 (B, C, H, W) → float32, normalized, on
        its device, flipped per image when ``train`` and ``flip`` (see ``normalize_images``). A batch that
        is already prepared is returned as it is."""
        if any(isinstance(v, np.ndarray) for v in batch.values()):
            batch = as_tensors(batch)  # a batch collated by hand, not through the loader
        images = batch["image"]
        if images.dtype != torch.uint8:
            return batch
        return {**batch, "image": normalize_images(images, self.mean, self.std, flip=train and self.flip)}

    def on_after_batch_transfer(self, batch: Any, dataloader_idx: int) -> Any:
        """Lightning's hook, after the batch reached the model's device: ``prepare_batch`` there (the flip
        only while training)."""
        training = self.trainer is not None and self.trainer.training
        return self.prepare_batch(batch, train=training)

    def eval_batches(
        self, split: str = "val", device: torch.device | str | None = None, limit: int | None = None
    ) -> Iterator[dict[str, Any]]:
        """The batches of the ``"val"``, ``"test"`` or ``"train"`` split, in order, without augmentation,
        prepared for a model (on ``device``), for code outside a Lightning loop (``evaluate``, metrics).

        Args:
            split: Which split.
            device: Where the batches go; ``None`` keeps them on the CPU.
            limit: Stop after this many batches.
        """
        if self.dataset is None:
            self.setup("validate")
        subsets = {"val": self.val_set, "test": self.test_set, "train": self.train_set}
        if split not in subsets:
            raise ConfigError(f"split must be one of {sorted(subsets)}, got {split!r}")
        for i, batch in enumerate(self._loader(subsets[split], train=False)):
            if limit is not None and i >= limit:
                return
            if device is not None:
                batch = {k: v.to(device) if isinstance(v, torch.Tensor) else v for k, v in batch.items()}
            yield self.prepare_batch(batch)

    def _loader(self, dataset: Dataset, train: bool) -> DataLoader:
        return ArrayBatchLoader(
            dataset,
            batch_size=self.batch_size,
            shuffle=train,
            # a last training batch of one image would break BatchNorm; keep tiny sets whole
            drop_last=train and len(dataset) > self.batch_size,
            num_workers=self.num_workers,
            pin_memory=self.pin_memory and torch.cuda.is_available(),
            persistent_workers=self.num_workers > 0,
            collate_fn=collate,
        )

    def train_dataloader(self) -> DataLoader:
        return self._loader(self.train_set, train=True)

    def val_dataloader(self) -> DataLoader:
        return self._loader(self.val_set, train=False)

    def test_dataloader(self) -> DataLoader:
        """The test split where the dataset has an official one, else the validation split (the study's)."""
        return self._loader(self.test_set, train=False)

    def predict_dataloader(self) -> DataLoader:
        """The validation split, in order, without augmentation."""
        return self._loader(self.val_set, train=False)

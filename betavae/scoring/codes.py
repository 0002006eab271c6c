"""Codes of the validation images with their observed ground truth: what the metrics and traversal labels read.

Data with attributes or labels (CelebA's 40 attributes, class labels) can only be scored on images whose
ground truth was observed: the validation split. ``ValidationCodes`` collects one code vector and the
ground truth of each validation image, at most ``max_images`` of them, on every process, and gathers them
so that every rank holds the same rows, in the same order, as a single process would have collected:

- each rank keeps its first ``ceil(max_images / world_size)`` images; Lightning's distributed sampler deals
  the split out in turn (position ``i · world_size + rank``), so interleaving the ranks' rows restores the
  loader's order, and the union is the single process's first images;
- the images the sampler repeats to even out the ranks are dropped by their dataset ``"index"``;
- rows are sorted by that index, so the seeded subsamples of the metrics pick the same rows.

``ground_truth_columns`` turns what a batch observed into metric columns: factors and binary attributes
as they are, a class label as one 0/1 column per class (``"Trouser"``: is it a trouser?), since the
metrics compare several factors and a single class column leaves nothing to compare; columns that take
one value only are dropped (nothing to predict).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import lightning as L
import numpy as np
import torch

from betavae.data.ground_truth import ground_truth_kind, observed_factors
from betavae.disentanglement import dimension_attributes
from betavae.errors import ConfigError
from betavae.model_api import with_label


def batch_codes(model: Any, batch: dict[str, Any]) -> torch.Tensor:
    """``model.embed`` of a batch's normalized ``"image"`` (with its ``"label"`` for conditional models):
    (B, D) codes, μ for VAEs. Call it inside ``betavae.model_api.evaluating``."""
    x = batch["image"]
    label = batch.get("label")
    label = label.to(x.device) if isinstance(label, torch.Tensor) else None
    return with_label(model.embed, x, label=label).flatten(1)  # (B, D)


def ground_truth_columns(
    factors: np.ndarray, names: Sequence[str], kind: str | None, classes: Sequence[str] | None = None
) -> tuple[np.ndarray, tuple[str, ...], tuple[str, ...]]:
    """The metric columns of observed ground truth: (factors (N, K') int64, their names, dropped names).

    Args:
        factors: What ``observed_factors`` returned for the images, (N, K) int64.
        names: Its K names.
        kind: ``ground_truth_kind`` of the data: for ``"labels"`` the single class column becomes one 0/1
            column per class seen, named by ``classes``.
        classes: The class names (the data module's ``classes``); ``None``: ``class 0``, ``class 1``, ...
    """
    factors = np.asarray(factors, dtype=np.int64).reshape(len(factors), -1)
    names = tuple(str(n) for n in names)
    if kind == "labels":
        labels = factors[:, 0]
        seen = np.unique(labels)
        factors = (labels[:, None] == seen[None, :]).astype(np.int64)  # (N, classes seen)
        names = tuple(str(classes[c]) if classes is not None and c < len(classes) else f"class {c}" for c in seen)
    varied = np.array([len(np.unique(factors[:, k])) > 1 for k in range(factors.shape[1])], dtype=bool)
    dropped = tuple(n for n, keep in zip(names, varied, strict=True) if not keep)
    return factors[:, varied], tuple(n for n, keep in zip(names, varied, strict=True) if keep), dropped


class ValidationCodes:
    """Codes (N, D) and observed ground truth (N, K) of at most ``max_images`` validation images.

    ``reset(trainer)`` at the start of an epoch, ``add`` per batch, ``gather(trainer)`` at its end (a
    collective: every rank must call it). Without a trainer (``evaluate``) ``gather(None)`` returns the
    rows of this process.

    Args:
        max_images: Most images kept, over all processes together; ``None``: every image.
    """

    def __init__(self, max_images: int | None = 5000) -> None:
        if max_images is not None and max_images < 2:
            raise ConfigError(f"max_images must be at least 2, or None (all), got {max_images}")
        self.max_images = max_images
        self.names: tuple[str, ...] = ()
        self._limit = max_images if max_images is not None else math.inf
        self._codes: list[torch.Tensor] = []
        self._factors: list[np.ndarray] = []
        self._index: list[np.ndarray] = []
        self._count = 0

    def reset(self, trainer: L.Trainer | None = None) -> None:
        """Forget the rows; each process keeps ``ceil(max_images / world_size)`` from now on."""
        world = trainer.world_size if trainer is not None else 1
        self._limit = math.ceil(self.max_images / max(1, world)) if self.max_images is not None else math.inf
        self._codes, self._factors, self._index, self._count = [], [], [], 0

    @property
    def full(self) -> bool:
        """Whether this process has all the rows it keeps."""
        return self._count >= self._limit

    def add(self, codes: torch.Tensor, batch: dict[str, Any], datamodule: Any) -> None:
        """Keep the codes (B, D) of ``batch`` and its ground truth (``observed_factors``), up to the limit."""
        if self.full:
            return
        factors, self.names = observed_factors(batch, datamodule)  # (B, K)
        take = int(min(len(codes), self._limit - self._count))
        index = batch.get("index")
        index = index.detach().cpu().numpy().astype(np.int64) if isinstance(index, torch.Tensor) else None
        self._codes.append(codes[:take].detach().float().cpu())
        self._factors.append(factors[:take])
        self._index.append(index[:take] if index is not None else np.full(take, -1, dtype=np.int64))
        self._count += take

    def local_rows(self) -> tuple[torch.Tensor, torch.Tensor]:
        """This process's rows: codes (n, D) float32 and (factors | dataset index) (n, K + 1) int64."""
        if not self._count:
            return torch.zeros(0, 0), torch.zeros(0, 0, dtype=torch.int64)
        factors = torch.from_numpy(np.concatenate(self._factors))  # (n, K)
        index = torch.from_numpy(np.concatenate(self._index))  # (n,)
        return torch.cat(self._codes), torch.cat([factors, index[:, None]], dim=1)  # the index last

    def gather(self, trainer: L.Trainer | None) -> tuple[np.ndarray, np.ndarray] | None:
        """Every process's rows as (codes (N, D) float64, factors (N, K) int64), the same on every rank, or
        ``None`` when no process has any. A collective under DDP."""
        codes, rows = self.local_rows()
        if trainer is not None and trainer.world_size > 1:
            codes, rows = interleave_ranks(*_all_gather_padded(trainer, codes, rows))
        return self.finish(codes, rows)

    def finish(self, codes: torch.Tensor, rows: torch.Tensor) -> tuple[np.ndarray, np.ndarray] | None:
        """Rows in the loader's order → the first ``max_images`` distinct images, sorted by dataset index."""
        if len(codes) == 0:
            return None
        codes, factors, index = codes.double().numpy(), rows[:, :-1].numpy(), rows[:, -1].numpy()
        if (index >= 0).all():
            _, first = np.unique(index, return_index=True)  # the sampler's repeats out, first occurrences kept
            keep = np.sort(first)[: self.max_images]
            order = keep[np.argsort(index[keep], kind="stable")]
            return codes[order], factors[order]
        return codes[: self.max_images], factors[: self.max_images]


def interleave_ranks(
    counts: torch.Tensor, codes: torch.Tensor, rows: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """The ranks' rows in the distributed sampler's order: (codes (n, D), rows (n, K + 1)).

    Args:
        counts: Rows of each rank, (W,).
        codes: Each rank's codes padded to one length m, (W, m, D).
        rows: Each rank's factors and index, padded likewise, (W, m, K + 1).
    """
    valid = torch.arange(codes.shape[1])[None, :] < counts[:, None]  # (W, m)
    # position i * W + r of the loader is row i of rank r: walk i first, then r
    return codes.transpose(0, 1)[valid.T], rows.transpose(0, 1)[valid.T]


def _all_gather_padded(
    trainer: L.Trainer, codes: torch.Tensor, rows: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Every rank's (codes (n_r, D), rows (n_r, K + 1)) padded to the longest: counts (W,), (W, m, D), (W, m, K + 1)."""
    device = trainer.strategy.root_device
    counts = trainer.strategy.all_gather(torch.tensor([len(codes)], device=device)).flatten().cpu()  # (W,)
    shapes = trainer.strategy.all_gather(torch.tensor([codes.shape[1], rows.shape[1]], device=device)).view(-1, 2)
    m, d, k = int(counts.max()), int(shapes[:, 0].max()), int(shapes[:, 1].max())
    padded_codes = torch.zeros(max(m, 1), d, device=device)
    padded_rows = torch.zeros(max(m, 1), k, dtype=torch.int64, device=device)
    if len(codes):
        padded_codes[: len(codes)] = codes.to(device)
        padded_rows[: len(rows)] = rows.to(device)
    all_codes = _stacked(trainer.strategy.all_gather(padded_codes), padded_codes).cpu()  # (W, m, D)
    all_rows = _stacked(trainer.strategy.all_gather(padded_rows), padded_rows).cpu()  # (W, m, K + 1)
    return counts, all_codes, all_rows


def _stacked(gathered: torch.Tensor, local: torch.Tensor) -> torch.Tensor:
    """``all_gather``'s result with the ranks in front: a strategy that does not distribute returns the
    local tensor itself, which is then the one rank."""
    return gathered.unsqueeze(0) if gathered.dim() == local.dim() else gathered


def ground_truth_of(datamodule: Any) -> tuple[str | None, Sequence[str] | None]:
    """(``ground_truth_kind``, the class names for labels) of a set-up data module."""
    kind = ground_truth_kind(datamodule) if datamodule is not None else None
    classes = getattr(datamodule, "classes", None) if kind == "labels" else None
    return kind, list(classes) if classes else None


def dimension_captions(codes: np.ndarray, factors: np.ndarray, names: Sequence[str], datamodule: Any) -> dict[int, str]:
    """What each code dimension predicts best, as traversal captions: ``{3: "pos_x ↑ (MI 0.78)", ...}``.

    ``betavae.disentanglement.dimension_attributes`` of validation codes (N, D) against their observed
    ground truth (N, K) (``ground_truth_columns``: a class label as one 0/1 column per class); ``{}`` when
    no column takes two values.
    """
    kind, classes = ground_truth_of(datamodule)
    columns, kept, _ = ground_truth_columns(factors, names, kind, classes)
    if columns.shape[1] == 0 or len(codes) < 2:
        return {}
    return {a.dim: a.label for a in dimension_attributes(codes, columns, kept)}

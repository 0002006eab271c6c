"""Per-image seeds: the seed of each image of a batch (its dataset index), which makes validation noise and
corruptions independent of batching, order and the number of processes (used by the models' losses and
``betavae.model_api``)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch


def image_seeds(batch: Mapping[str, Any]) -> list[int]:
    """A seed per image of ``batch``: its dataset ``"index"``, else its position in the batch."""
    index = batch.get("index")
    if isinstance(index, torch.Tensor):
        return [int(i) for i in index.tolist()]
    return list(range(batch["image"].shape[0]))

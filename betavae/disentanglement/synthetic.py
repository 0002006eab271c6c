"""A ground-truth dataset whose "images" are its own factor indices: known answers for the metrics.

``FactorGrid`` implements :class:`~betavae.data.ground_truth.GroundTruthData` without rendering anything:
the image of a factor row holds factor k's index in pixel k. A representation built on
``FactorGrid.factors_of`` (the true factors, a permutation, a rescaling, noise, a rotation) then has a
known answer under every metric, in milliseconds. For tests and benchmarks; real datasets render images.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import torch

DSPRITES_SIZES = (3, 6, 40, 32, 32)
DSPRITES_NAMES = ("shape", "scale", "orientation", "pos_x", "pos_y")


class FactorGrid:
    """A full grid of discrete factors; the image of a row (n, K) is uint8 (n, 1, S, S), pixel k = factor k.

    Args:
        factor_sizes: Number of values of each factor (each at most 256); by default dSprites' grid
            (shape 3, scale 6, orientation 40, pos_x 32, pos_y 32).
        factor_names: One name per factor; by default dSprites' names for its grid, else ``factor_k``.
    """

    def __init__(self, factor_sizes: Sequence[int] = DSPRITES_SIZES, factor_names: Sequence[str] | None = None) -> None:
        sizes = tuple(int(s) for s in factor_sizes)
        if not sizes or not all(1 <= s <= 256 for s in sizes):
            raise ValueError(f"factor_sizes must be 1 to 256 values each (one pixel per factor), got {sizes}")
        if factor_names is None:
            factor_names = DSPRITES_NAMES if sizes == DSPRITES_SIZES else [f"factor_{k}" for k in range(len(sizes))]
        if len(factor_names) != len(sizes):
            raise ValueError(f"{len(factor_names)} factor_names for {len(sizes)} factors")
        self.factor_sizes = sizes
        self.factor_names = tuple(factor_names)
        self.image_size = math.ceil(math.sqrt(len(sizes)))

    def sample_factors(self, n: int, rng: np.random.Generator) -> np.ndarray:
        """``n`` rows (n, K) int64, each factor uniform over its values."""
        return np.stack([rng.integers(size, size=n) for size in self.factor_sizes], axis=1).astype(np.int64)

    def images_of(self, factors: np.ndarray) -> torch.Tensor:
        """The images (n, 1, S, S) uint8 of factor rows (n, K): pixel k (row-major) holds factor k."""
        factors = np.asarray(factors)
        k = len(self.factor_sizes)
        if factors.ndim != 2 or factors.shape[1] != k:
            raise ValueError(f"factor rows must have shape (n, {k}), got {factors.shape}")
        if (factors < 0).any() or (factors >= np.array(self.factor_sizes)).any():
            raise ValueError(f"factor indices out of range for sizes {self.factor_sizes}")
        pixels = np.zeros((len(factors), self.image_size**2), dtype=np.uint8)
        pixels[:, :k] = factors
        return torch.from_numpy(pixels).view(-1, 1, self.image_size, self.image_size)

    def factors_of(self, images: torch.Tensor) -> np.ndarray:
        """The factor rows (n, K) int64 that ``images_of`` wrote into ``images`` (n, 1, S, S)."""
        return images.reshape(len(images), -1)[:, : len(self.factor_sizes)].numpy().astype(np.int64)

"""The fast shapes renderer draws exactly (bit for bit) what the straightforward one drew.

``_reference_render`` is ``render_shapes`` as it was before it rendered per-scale crops in big batches
(commit b285a69): every row's full window, 64 rows at a time, ``avg_pool2d`` coverage, pasted one by one.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from betavae.data import ShapesDataModule
from betavae.data.shapes import (
    FACTOR_NAMES,
    FACTOR_VALUES,
    HALF_SIZE,
    MARGIN,
    REACH,
    SHAPES,
    _inside,
    factor_values_of,
    render_shapes,
    shapes_images,
)


def _reference_render(factors: torch.Tensor, image_size: int = 64, supersample: int = 4) -> torch.Tensor:
    factors = factors.float()
    n, size = len(factors), image_size
    window = min(size, math.ceil(2 * REACH * size) + 2)
    centres = MARGIN + factors[:, 3:5] * (1 - 2 * MARGIN)
    origins = (centres * size).floor().long().sub(window // 2).clamp(0, size - window)
    offsets = (torch.arange(window * supersample, dtype=torch.float32) + 0.5) / supersample
    images = torch.zeros(n, 1, size, size, dtype=torch.uint8)
    for kind in range(len(SHAPES)):
        for rows in (factors[:, 0] == kind).nonzero().flatten().split(64):
            _, scale, theta, _, _ = (factors[rows, i].view(-1, 1, 1) for i in range(5))
            xs = (origins[rows, 0].view(-1, 1, 1) + offsets.view(1, 1, -1)) / size
            ys = (origins[rows, 1].view(-1, 1, 1) + offsets.view(1, -1, 1)) / size
            dx, dy = xs - centres[rows, 0].view(-1, 1, 1), ys - centres[rows, 1].view(-1, 1, 1)
            cos, sin = torch.cos(theta), torch.sin(theta)
            p = (cos * dx - sin * dy) / (HALF_SIZE * scale)
            q = (sin * dx + cos * dy) / (HALF_SIZE * scale)
            mask = _inside(kind, p, q).float().unsqueeze(1)
            patches = (torch.nn.functional.avg_pool2d(mask, supersample) * 255).round().to(torch.uint8)
            for row, patch in zip(rows.tolist(), patches, strict=True):
                x0, y0 = origins[row].tolist()
                images[row, :, y0 : y0 + window, x0 : x0 + window] = patch
    return images


def _covering_rows(repeats: int, seed: int) -> torch.Tensor:
    """Index rows (720 · repeats, 5): every (shape, scale, orientation) ``repeats`` times, shuffled.

    Positions are drawn at random, except that each combination's first two rows sit at the grid's border
    (pos 0 and 31, the four corners in turn) so that the extreme sub-pixel phases and windows are covered.
    """
    rng = np.random.default_rng(seed)
    sizes = [len(FACTOR_VALUES[name]) for name in FACTOR_NAMES]
    combos = np.stack(np.meshgrid(*[np.arange(k) for k in sizes[:3]], indexing="ij"), -1).reshape(-1, 3)
    combos = np.repeat(combos, repeats, axis=0)  # (720 · r, 3)
    positions = rng.integers(0, 32, size=(len(combos), 2))
    corners = np.array([[0, 0], [31, 31], [0, 31], [31, 0]])
    first, second = np.arange(0, len(combos), repeats), np.arange(1, len(combos), repeats)
    positions[first] = corners[np.arange(len(first)) % 4]
    positions[second] = corners[(np.arange(len(second)) + 2) % 4]
    rows = np.concatenate([combos, positions], axis=1)[rng.permutation(len(combos))]
    return torch.from_numpy(rows).long()  # (N, 5)


@pytest.mark.parametrize("size", [32, pytest.param(64, marks=pytest.mark.slow)])  # 64 px: ~25 s of CPU
def test_renderer_is_bit_identical_to_the_reference_on_5040_rows(size):
    rows = _covering_rows(repeats=7, seed=size)  # 5,040 rows, every shape/scale/orientation, border positions
    assert len(rows) >= 5000 and {0, 31} <= set(rows[:, 3].tolist()) and {0, 31} <= set(rows[:, 4].tolist())
    reference = _reference_render(factor_values_of(rows), size, 4)  # (N, 1, S, S)
    assert reference.float().mean() > 5  # shapes were drawn
    gray = shapes_images(rows, size, 1, 4)
    assert gray.dtype == torch.uint8 and torch.equal(gray, reference)
    rgb = shapes_images(rows, size, 3, 4)
    assert rgb.shape == (len(rows), 3, size, size) and torch.equal(rgb, reference.expand(-1, 3, -1, -1))


@pytest.mark.parametrize(("size", "supersample"), [(16, 1), (16, 3), (24, 6), (40, 2)])
def test_renderer_is_bit_identical_for_other_sizes_and_supersampling(size, supersample):
    rows = _covering_rows(repeats=1, seed=supersample)  # 720 rows
    reference = _reference_render(factor_values_of(rows), size, supersample)
    assert torch.equal(render_shapes(factor_values_of(rows), size, supersample), reference)


def test_renderer_does_not_depend_on_batching_nor_on_off_grid_values():
    rows = _covering_rows(repeats=1, seed=7)[:300]
    values = factor_values_of(rows)
    tiny = render_shapes(values, 32, 4, max_samples=1)  # one row per batch
    assert torch.equal(tiny, render_shapes(values, 32, 4)) and torch.equal(tiny, _reference_render(values, 32, 4))
    off_grid = values.clone()
    off_grid[:, 1] = torch.linspace(0.05, 1.3, len(values))  # scales off the grid, some past the window's design
    off_grid[:, 3:5] = torch.rand(len(values), 2, generator=torch.Generator().manual_seed(0))
    assert torch.equal(render_shapes(off_grid, 32, 4), _reference_render(off_grid, 32, 4))


@pytest.mark.parametrize("channels", [1, 3])
def test_training_images_and_images_of_are_unchanged(channels):
    dm = ShapesDataModule(num_images=600, image_size=32, channels=channels, seed=11)
    dataset = dm.build_dataset()
    reference = _reference_render(factor_values_of(dataset.factors), 32, 4).expand(-1, channels, -1, -1)
    assert torch.equal(dataset.images, reference)
    assert torch.equal(dm.images_of(dataset.factors[:50].numpy()), reference[:50])

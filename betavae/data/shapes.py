"""dSprites-style shapes, rendered procedurally from a seed: no download, no file.

Each image shows one white shape (square, ellipse or heart) on black. Its five ground-truth factors
are drawn from the dSprites grid (Matthey et al. 2017):

=============  ========================================  =========================================
factor         values                                    meaning
=============  ========================================  =========================================
shape          0 square, 1 ellipse, 2 heart
scale          6 values in [0.5, 1]                      half-size = 0.15 · scale · image width
orientation    40 values in [0, 2π)                      radians, counter-clockwise as displayed
pos_x          32 values in [0, 1]                       centre at (0.25 + 0.5 · pos_x) · width
pos_y          32 values in [0, 1]                       centre at (0.25 + 0.5 · pos_y) · height, down
=============  ========================================  =========================================

The geometry follows dSprites' as measured from its images (the density plots and sample grid of
google-deepmind/dsprites-dataset's ``dsprites_reloading_example.ipynb``; the generator itself is not
public): centres span the middle half of the image, [16, 48] px at 64 px, about one pixel per position
step; a scale-1 square is 0.3 of the width (19.2 px at 64 px). No shape is cut: the farthest point of
any shape lies 0.15·√2 ≈ 0.21 of the width from its centre, inside the 0.25 margin. Differences from
dSprites: the outlines are our own (a square; an ellipse with semi-axes 1 and 0.5 of the half-size,
where dSprites' ellipse is somewhat longer than its square; a heart curve), pixels are anti-aliased
coverage (``supersample``² samples per pixel) where dSprites' are binary, and our orientation 0 need not
be dSprites'. As in dSprites, orientation is ambiguous for symmetric shapes (a square repeats every
π/2, an ellipse every π).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

from betavae.data.base import ImageDataModule
from betavae.data.ground_truth import check_factor_indices, uniform_factors
from betavae.errors import ConfigError

SHAPES = ("square", "ellipse", "heart")
FACTOR_NAMES = ("shape", "scale", "orientation", "pos_x", "pos_y")
FACTOR_VALUES: dict[str, torch.Tensor] = {
    "shape": torch.arange(3, dtype=torch.float64),
    "scale": torch.linspace(0.5, 1.0, 6, dtype=torch.float64),
    "orientation": torch.arange(40, dtype=torch.float64) * (2 * math.pi / 40),
    "pos_x": torch.linspace(0.0, 1.0, 32, dtype=torch.float64),
    "pos_y": torch.linspace(0.0, 1.0, 32, dtype=torch.float64),
}
HALF_SIZE = 0.15  # half-size of a scale-1 shape, as a fraction of the image width (dSprites: 0.3 / 2)
MARGIN = 0.25  # centres span [MARGIN, 1 - MARGIN] of the width and height, as in dSprites
REACH = HALF_SIZE * math.sqrt(2)  # the farthest any shape reaches from its centre (< MARGIN: none is cut)
HEART_FIT = 1.25  # the heart curve spans about [-1.14, 1.14] x [-1.0, 1.25]; this fits it in [-1, 1]
# how far each shape reaches from its centre, in half-sizes: the square's corner √2, the ellipse's major
# semi-axis 1, the heart < 1.3 (at radius r ≥ 1.3, R² = a² + b² ≥ (1.25 r - 0.125)² ≥ 2.24, and there
# (R² - 1)³ > 0.186 R⁵ ≥ a² b³, so the point is outside)
SHAPE_REACH = (math.sqrt(2), 1.0, 1.3)


def sample_factor_indices(num_images: int, seed: int) -> torch.Tensor:
    """``num_images`` factor index rows (N, 5) int64 drawn uniformly from the grid (column k in 0 .. size_k - 1)."""
    generator = torch.Generator().manual_seed(seed)
    columns = [torch.randint(len(FACTOR_VALUES[name]), (num_images,), generator=generator) for name in FACTOR_NAMES]
    return torch.stack(columns, dim=1)  # (N, 5) int64


def factor_values_of(indices: torch.Tensor) -> torch.Tensor:
    """The factor values (N, 5) float32 of index rows (N, 5): what ``render_shapes`` takes."""
    columns = [FACTOR_VALUES[name][indices[:, k]] for k, name in enumerate(FACTOR_NAMES)]
    return torch.stack(columns, dim=1).float()  # (N, 5)


def sample_factors(num_images: int, seed: int) -> torch.Tensor:
    """``num_images`` factor VALUE rows (shape, scale, orientation, pos_x, pos_y) drawn uniformly from the grid.

    The values of ``sample_factor_indices(num_images, seed)``.
    """
    return factor_values_of(sample_factor_indices(num_images, seed))


def shapes_images(indices: torch.Tensor, image_size: int, channels: int, supersample: int) -> torch.Tensor:
    """The images of factor index rows (N, 5): uint8 (N, channels, image_size, image_size), gray repeated."""
    images = render_shapes(factor_values_of(indices), image_size, supersample)  # (N, 1, S, S)
    return images.expand(-1, channels, -1, -1).contiguous() if channels > 1 else images


def _inside(shape: int, p: torch.Tensor, q: torch.Tensor) -> torch.Tensor:
    """Whether the shape-local point (p, q) (units of the half-size, q pointing down) is inside."""
    if shape == 0:  # square
        return torch.maximum(p.abs(), q.abs()) <= 1
    if shape == 1:  # ellipse, semi-axes 1 and 0.5
        return p.pow(2) + (q / 0.5).pow(2) <= 1
    a, b = HEART_FIT * p, -HEART_FIT * q + 0.125  # heart curve, y up, centred vertically
    a2 = a.pow(2)
    return (a2 + b.pow(2) - 1).pow(3) - a2 * b.pow(3) <= 0


def _block_counts(mask: torch.Tensor, block: int) -> torch.Tensor:
    """Trues in each ``block`` x ``block`` block of a bool mask (n, H·block, W·block): (n, H, W) integers.

    Adds the block's columns, then its rows, as strided slices (exact integer sums, fast on CPU).
    """
    n, rows, cols = mask.shape
    dtype = torch.uint8 if block * block <= 255 else torch.int32
    m = mask.to(dtype).view(n, rows, cols // block, block)  # (n, H·b, W, b)
    across = m[..., 0].clone()
    for k in range(1, block):
        across += m[..., k]
    across = across.view(n, rows // block, block, cols // block)  # (n, H, b, W)
    counts = across[:, :, 0].clone()
    for k in range(1, block):
        counts += across[:, :, k]
    return counts.long()  # (n, H, W)


def _coverage_to_uint8(supersample: int) -> torch.Tensor:
    """uint8 pixel value of each count 0 .. supersample² of covered samples, computed as the pixel was always computed.

    ``avg_pool2d`` of a 0/1 block, times 255, rounded: the block's sum is an exact small integer whatever
    the order, so the value depends on the count alone and this table reproduces it bit for bit.
    """
    counts = torch.arange(supersample**2 + 1)
    blocks = (torch.arange(supersample**2).view(1, -1) < counts.view(-1, 1)).float()  # (K, ss²) k ones
    blocks = blocks.view(-1, 1, supersample, supersample)  # (K, 1, ss, ss)
    return (torch.nn.functional.avg_pool2d(blocks, supersample) * 255).round().to(torch.uint8).flatten()  # (K,)


def render_shapes(
    factors: torch.Tensor, image_size: int = 64, supersample: int = 4, max_samples: int = 1 << 21
) -> torch.Tensor:
    """Render factor rows (N, 5) into uint8 images (N, 1, image_size, image_size), deterministically.

    Pixel ``(x, y)`` has the coverage of ``supersample``² samples at ``(x + (i + ½) / ss, y + (j + ½) / ss)``,
    each tested in float32 against the shape turned and scaled in its own frame. A shape lies within
    ``reach = HALF_SIZE · SHAPE_REACH[shape] · scale`` of its centre, so only a window of
    ``ceil(2 · reach · S) + 2`` pixels around the centre's pixel is tested (every sample outside it is at
    least ½ / ss pixel beyond the shape's reach, far beyond float32 error, so certainly outside); rows are
    rendered in batches of one (shape, scale) and pasted with one scatter. The sub-pixel phase of the
    centre enters every sample, so there is no patch per (shape, scale, orientation) to reuse: each row
    is tested in full.

    Args:
        factors: Factor VALUE rows (N, 5) (shape, scale, orientation, pos_x, pos_y), see ``factor_values_of``.
        image_size: Height and width S.
        supersample: Samples per pixel along each axis (anti-aliasing).
        max_samples: Most samples tested at once (memory: about ten float32 tensors of this size, 8 MB each).
    """
    if supersample < 1:
        raise ConfigError(f"supersample must be >= 1, got {supersample}")
    factors = factors.float()
    n, size, ss = len(factors), image_size, supersample
    # the window that holds any shape (scale 1), as always; its pixel origin fixes every sample's coordinate
    window = min(size, math.ceil(2 * REACH * size) + 2)
    centres = MARGIN + factors[:, 3:5] * (1 - 2 * MARGIN)  # (N, 2) x, y in [0, 1], y down
    pixels = (centres * size).floor().long()  # (N, 2) the pixel of each centre
    origins = pixels.sub(window // 2).clamp(0, size - window)  # (N, 2) the window's top-left pixel
    offsets = (torch.arange(window * ss, dtype=torch.float32) + 0.5) / ss  # (window·ss,) in pixels
    lut = _coverage_to_uint8(ss)  # (ss² + 1,) uint8
    images = torch.zeros(n, size * size, dtype=torch.uint8)  # (N, S·S)
    for kind in range(len(SHAPES)):
        for scale_value in factors[factors[:, 0] == kind, 1].unique().tolist():
            group = ((factors[:, 0] == kind) & (factors[:, 1] == scale_value)).nonzero().flatten()
            # the crop of the window that holds this scale's shape (the whole window outside (0, 1])
            reach = HALF_SIZE * SHAPE_REACH[kind] * scale_value  # ≤ REACH: the shape's reach, image widths
            crop = min(window, math.ceil(2 * reach * size) + 2) if 0 < scale_value <= 1 else window
            first = (pixels[group] - crop // 2 - origins[group]).clamp(0, window - crop)  # (n, 2) in the window
            span = torch.arange(crop * ss)  # (crop·ss,) sample index within the crop
            chunk = max(1, max_samples // (crop * ss) ** 2)
            for rows, starts in zip(group.split(chunk), first.split(chunk), strict=True):
                _, scale, theta, _, _ = (factors[rows, i].view(-1, 1, 1) for i in range(5))
                # the very float32 operations of the full window, on the crop's samples
                sx = offsets[starts[:, 0].view(-1, 1) * ss + span.view(1, -1)]  # (n, c·ss)
                sy = offsets[starts[:, 1].view(-1, 1) * ss + span.view(1, -1)]  # (n, c·ss)
                xs = (origins[rows, 0].view(-1, 1, 1) + sx.unsqueeze(1)) / size  # (n, 1, c·ss)
                ys = (origins[rows, 1].view(-1, 1, 1) + sy.unsqueeze(2)) / size  # (n, c·ss, 1)
                dx, dy = xs - centres[rows, 0].view(-1, 1, 1), ys - centres[rows, 1].view(-1, 1, 1)
                # rotate by -theta in the displayed (y up) frame: the shape turns counter-clockwise by theta
                cos, sin = torch.cos(theta), torch.sin(theta)
                p = (cos * dx - sin * dy) / (HALF_SIZE * scale)
                q = (sin * dx + cos * dy) / (HALF_SIZE * scale)
                mask = _inside(kind, p, q)  # (n, c·ss, c·ss) bool
                counts = _block_counts(mask, ss)  # (n, c, c) covered samples
                top_left = origins[rows] + starts  # (n, 2) the crop's top-left pixel in the image
                ys_img = top_left[:, 1].view(-1, 1, 1) + torch.arange(crop).view(1, -1, 1)  # (n, c, 1)
                xs_img = top_left[:, 0].view(-1, 1, 1) + torch.arange(crop).view(1, 1, -1)  # (n, 1, c)
                images[rows.view(-1, 1, 1), ys_img * size + xs_img] = lut[counts]
    return images.view(n, 1, size, size)


class ShapesDataset(Dataset):
    """Rendered shapes with their factors; items ``{"image", "factors", "label"}``.

    ``"factors"`` is the row of factor INDICES (5,) int64 (``FACTOR_VALUES[name][index]`` is the value),
    ``"label"`` the shape index.

    Args:
        num_images: Number of images.
        image_size: Height and width.
        channels: 1, or 3 (the gray image repeated, for RGB models).
        seed: Seed of the factor draw; the same seed gives the same images.
        supersample: Samples per pixel along each axis for anti-aliasing.
    """

    def __init__(
        self, num_images: int, image_size: int = 64, channels: int = 1, seed: int = 0, supersample: int = 4
    ) -> None:
        if num_images < 1:
            raise ConfigError(f"num_images must be positive, got {num_images}")
        self.factor_names = FACTOR_NAMES
        self.factors = sample_factor_indices(num_images, seed)  # (N, 5) int64
        self.images = shapes_images(self.factors, image_size, channels, supersample)  # (N, C, S, S)

    def __len__(self) -> int:
        return len(self.factors)

    def __getitem__(self, i: int) -> dict[str, Any]:
        return {"image": self.images[i], "factors": self.factors[i], "label": int(self.factors[i, 0])}


class ShapesDataModule(ImageDataModule):
    """Procedurally generated dSprites-style shapes (square, ellipse, heart) with ground-truth factors.

    Needs no download and no file: the training images are rendered at setup from ``seed``; batches carry
    ``"factors"``, the (B, 5) int64 factor indices named by ``factor_names``, and ``"label"``, the shape.

    Ground truth (``betavae.data.ground_truth.GroundTruthData``), usable right after construction: the
    full 3 x 6 x 40 x 32 x 32 grid of ``factor_names`` / ``factor_sizes``, their values in
    ``factor_values``, ``sample_factors(n, rng)`` and ``images_of(factors)``, which renders any index rows
    on demand exactly as the training images are rendered (same size, channels and supersampling).

    Args:
        num_images: Number of images (split 75/25 into training and validation).
        seed: Seed of the factor draw; the same seed renders the same images.
        supersample: Anti-aliasing samples per pixel along each axis.
        image_size: Height and width (64 like dSprites).
        channels: 1, or 3 to feed RGB models (gray repeated).
        flip: Off by default: a flipped image would no longer match its pos_x and orientation factors.
        **kwargs: ``ImageDataModule`` arguments (batch size, workers, split, normalization).
    """

    factor_names: tuple[str, ...] = FACTOR_NAMES
    factor_sizes: tuple[int, ...] = tuple(len(FACTOR_VALUES[name]) for name in FACTOR_NAMES)

    def __init__(
        self,
        num_images: int = 10_000,
        seed: int = 0,
        supersample: int = 4,
        image_size: int = 64,
        channels: int = 1,
        flip: bool = False,
        **kwargs: Any,
    ) -> None:
        super().__init__(image_size=image_size, channels=channels, flip=flip, **kwargs)
        if supersample < 1:
            raise ConfigError(f"supersample must be >= 1, got {supersample}")
        self.num_images = num_images
        self.seed = seed
        self.supersample = supersample

    @property
    def factor_values(self) -> dict[str, np.ndarray]:
        """The value of every factor index: ``factor_values[name][index]`` (float64)."""
        return {name: FACTOR_VALUES[name].numpy() for name in FACTOR_NAMES}

    def sample_factors(self, n: int, rng: np.random.Generator) -> np.ndarray:
        """``n`` factor index rows (n, 5) int64, each factor uniform over its values, drawn with ``rng``."""
        return uniform_factors(n, self.factor_sizes, rng)

    def images_of(self, factors: np.ndarray | torch.Tensor) -> torch.Tensor:
        """The images of factor index rows (n, 5), rendered now: uint8 (n, C, S, S) as the module trains on."""
        indices = torch.from_numpy(check_factor_indices(factors, self.factor_sizes))  # (n, 5)
        return shapes_images(indices, self.image_size, self.num_channels, self.supersample)

    def build_dataset(self) -> ShapesDataset:
        return ShapesDataset(self.num_images, self.image_size, self.num_channels, self.seed, self.supersample)

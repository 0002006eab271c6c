"""Codes of a factor grid's images, each image rendered and encoded at most once.

The codes μ of a model are a deterministic function of the image, and the image a deterministic function
of its factor row; so the metrics of one ``evaluate_representation`` call, which draw about 2.9 million
factor rows at disentanglement_lib's sizes from a grid of 737,280 distinct images (dSprites' 3 x 6 x 40 x
32 x 32), need each distinct image encoded once. ``GridCodes`` keeps a table (grid size, D) of the codes
seen so far and a mask of which rows are filled; each request renders and encodes only the distinct rows
not yet in the table, in chunks of ``max_images_per_call``, and reads the rest back.

Memory: the table costs grid size x D x (4 bytes for float32 codes, 8 for float64) plus one byte per grid
image for the mask: 29 MB for a 10-d model on the dSprites grid, 30 MB on 3D Shapes' 480,000 images.
Above ``max_bytes`` (default 1 GiB) there is no table: every request is encoded on its own (its distinct
rows once), which gives the same codes at the cost of the old, uncached path.

The codes are those ``represent`` returns, but an image may be encoded in a batch of other images than
before: a model's float arithmetic can then differ in the last bits (CPU convolutions pick kernels by
batch size), about 1e-7 relative for float32 codes; representations that are exact functions of the
image give identical codes.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

import numpy as np

from betavae.disentanglement.arrays import to_numpy

if TYPE_CHECKING:  # the protocol only; importing betavae.data would load Lightning
    from betavae.data.ground_truth import GroundTruthData
    from betavae.disentanglement.representation import Representation

#: Largest code table kept by default (bytes); above it the codes are encoded per request.
DEFAULT_MAX_BYTES = 1 << 30

#: Called after each request with its number of factor rows.
Progress = Callable[[int], None]


class GridCodes:
    """A lazily filled table of the codes of every image of a ground-truth grid.

    Args:
        data: The ground-truth dataset (``factor_sizes``, ``images_of``).
        represent: The representation function (images (n, C, S, S) uint8 → codes (n, D)).
        max_bytes: Largest table kept; 0 keeps none (every request encoded on its own, its distinct
            rows once).
        max_images_per_call: Most images rendered and passed to ``represent`` at once.

    Attributes:
        rendered: Images rendered and encoded so far (each distinct image once while the table is kept).
        requested: Factor rows asked for so far (what the uncached computation would have encoded).
        cached: Whether a table is kept (``None`` until the first codes tell D).
    """

    def __init__(
        self,
        data: GroundTruthData,
        represent: Representation,
        max_bytes: int = DEFAULT_MAX_BYTES,
        max_images_per_call: int = 4096,
    ) -> None:
        if max_bytes < 0 or max_images_per_call < 1:
            raise ValueError(
                f"GridCodes: max_bytes >= 0 and max_images_per_call >= 1, got {max_bytes}, {max_images_per_call}"
            )
        self.data = data
        self.represent = represent
        self.sizes = tuple(int(s) for s in data.factor_sizes)
        self.num_images = int(np.prod(self.sizes))
        self.max_bytes = max_bytes
        self.max_images_per_call = max_images_per_call
        self.rendered = 0
        self.requested = 0
        self.cached: bool | None = None if max_bytes > 0 else False
        self.progress: Progress | None = None
        self._table: np.ndarray | None = None  # (grid size, D)
        self._filled: np.ndarray | None = None  # (grid size,) bool

    def table_bytes(self, dims: int, dtype: np.dtype) -> int:
        """Bytes of a table of ``dims``-d codes of ``dtype`` with its mask."""
        return self.num_images * (dims * np.dtype(dtype).itemsize + 1)

    def _encode(self, factors: np.ndarray) -> np.ndarray:
        """Codes (n, D) as ``represent`` returns them, of factor rows (n, K), rendered in chunks."""
        chunks = []
        for start in range(0, len(factors), self.max_images_per_call):
            rows = factors[start : start + self.max_images_per_call]
            codes = to_numpy(self.represent(self.data.images_of(rows)))  # images (n, C, S, S) uint8
            if codes.ndim != 2 or len(codes) != len(rows):
                raise ValueError(
                    f"the representation function must return codes (n, D) for n = {len(rows)} images, "
                    f"got shape {codes.shape}"
                )
            chunks.append(codes)
            self.rendered += len(rows)
        return np.concatenate(chunks)

    def _keep(self, codes: np.ndarray) -> None:
        """Allocate the table for codes like these, unless it would exceed ``max_bytes``."""
        dtype = codes.dtype if codes.dtype in (np.float32, np.float64) else np.dtype(np.float64)
        self.cached = self.table_bytes(codes.shape[1], dtype) <= self.max_bytes
        if self.cached:
            self._table = np.empty((self.num_images, codes.shape[1]), dtype=dtype)
            self._filled = np.zeros(self.num_images, dtype=bool)

    def codes_of(self, factors: np.ndarray) -> np.ndarray:
        """Codes (n, D) float64 of factor index rows (n, K); each distinct image is encoded once.

        Raises:
            ValueError: the representation returns a wrong shape, or NaN or infinite codes (names the
                first such factor row).
        """
        factors = np.asarray(factors, dtype=np.int64)
        self.requested += len(factors)
        flat = np.ravel_multi_index(factors.T, self.sizes)  # (n,) grid index of each row
        if self.cached is False:
            distinct, inverse = np.unique(flat, return_inverse=True)
            rows = np.stack(np.unravel_index(distinct, self.sizes), axis=1)
            codes = self._encode(rows).astype(np.float64)[inverse.reshape(-1)]
        else:
            todo = np.unique(flat) if self._filled is None else np.unique(flat[~self._filled[flat]])
            if len(todo):
                new = self._encode(np.stack(np.unravel_index(todo, self.sizes), axis=1))
                if self.cached is None:
                    self._keep(new)
                if self.cached:
                    self._table[todo] = new
                    self._filled[todo] = True
            if self.cached:
                codes = self._table[flat].astype(np.float64)
            else:  # the first request found the table too large: answer it from what it encoded
                codes = new.astype(np.float64)[np.searchsorted(todo, flat)]
        bad = ~np.isfinite(codes).all(axis=1)
        if bad.any():
            raise ValueError(
                f"the representation returned NaN or infinite codes for {bad.sum()} of {len(codes)} images "
                f"(first: factors {factors[np.argmax(bad)].tolist()}); a broken model cannot be scored"
            )
        if self.progress is not None:
            self.progress(len(factors))
        return codes

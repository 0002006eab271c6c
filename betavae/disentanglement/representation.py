"""Representation functions: uint8 images (n, C, S, S) → codes (n, D) as NumPy floats.

A representation function is any ``Callable[[torch.Tensor], np.ndarray]``; ``model_representation``
makes one of a betavae model. ``encode_factors`` and ``sample_codes`` run one on the images of factor
rows of a :class:`~betavae.data.ground_truth.GroundTruthData`, in bounded chunks, and check what comes back.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from betavae.disentanglement.arrays import to_numpy

if TYPE_CHECKING:  # the protocol only; importing betavae.data would load Lightning
    from betavae.data.ground_truth import GroundTruthData
    from betavae.disentanglement.grid_codes import GridCodes

Representation = Callable[[torch.Tensor], np.ndarray]


def model_representation(model: Any, batch_size: int = 256, device: torch.device | str | None = None) -> Representation:
    """The representation function of a betavae model: μ of q(z|x) for VAEs, the code for autoencoders.

    Each call maps uint8 images (n, C, S, S) to [0, 1], then ``model.normalize`` and ``model.embed``
    (duck-typed: any object with those two methods and ``train``/``eval``), in batches of
    ``batch_size`` images so memory stays bounded, in eval mode without gradients; the model's
    train/eval mode is restored afterwards.

    Args:
        model: A betavae model (``AutoencoderModule``) or anything with ``normalize`` and ``embed``.
        batch_size: Images per forward pass.
        device: Where the images go; by default the device of the model's first parameter (or buffer),
            else the CPU. The model must already be there.

    Returns:
        A function ``images (n, C, S, S) uint8 → codes (n, D) float32``.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be positive, got {batch_size}")
    if device is None:
        tensors = [*model.parameters(), *model.buffers()] if isinstance(model, torch.nn.Module) else []
        device = tensors[0].device if tensors else torch.device("cpu")

    def represent(images: torch.Tensor) -> np.ndarray:
        if images.dim() != 4:
            raise ValueError(f"a representation takes images (n, C, S, S), got shape {tuple(images.shape)}")
        was_training = model.training
        model.eval()
        try:
            codes = []
            with torch.no_grad():
                for batch in images.split(batch_size):
                    x = model.normalize(batch.to(device).float() / 255.0)  # (B, C, S, S) normalized
                    codes.append(model.embed(x).flatten(1).float().cpu())  # (B, D)
        finally:
            model.train(was_training)
        return torch.cat(codes).numpy()

    return represent


def encode_factors(
    data: GroundTruthData,
    represent: Representation,
    factors: np.ndarray,
    max_images_per_call: int = 4096,
    cache: GridCodes | None = None,
) -> np.ndarray:
    """Codes (n, D) float64 of the images of factor rows (n, K), rendered and encoded in chunks.

    Args:
        data: The ground-truth dataset that renders the images.
        represent: The representation function.
        factors: Factor index rows (n, K).
        max_images_per_call: Most images rendered and passed to ``represent`` at once.
        cache: A ``GridCodes`` of ``data`` and ``represent`` that encodes each distinct image once and
            keeps its codes (then ``represent`` and ``max_images_per_call`` are its own); ``None``:
            every row rendered and encoded now.
    """
    if cache is not None:
        return cache.codes_of(factors)
    chunks = []
    for start in range(0, len(factors), max_images_per_call):
        rows = factors[start : start + max_images_per_call]
        images = data.images_of(rows)  # (n, C, S, S) uint8
        codes = to_numpy(represent(images))
        if codes.ndim != 2 or len(codes) != len(rows):
            raise ValueError(
                f"the representation function must return codes (n, D) for n = {len(rows)} images, "
                f"got shape {codes.shape}"
            )
        chunks.append(codes.astype(np.float64))
    codes = np.concatenate(chunks)
    bad = ~np.isfinite(codes).all(axis=1)
    if bad.any():
        raise ValueError(
            f"the representation returned NaN or infinite codes for {bad.sum()} of {len(codes)} images "
            f"(first: factors {factors[np.argmax(bad)].tolist()}); a broken model cannot be scored"
        )
    return codes


def draw_factors(data: GroundTruthData, n: int, rng: np.random.Generator) -> np.ndarray:
    """``data.sample_factors(n, rng)`` as int64 (n, K), checked: a wrong shape would scramble every score."""
    factors = np.asarray(data.sample_factors(n, rng))
    if factors.shape != (n, len(data.factor_sizes)):
        raise ValueError(
            f"{type(data).__name__}.sample_factors({n}) returned shape {factors.shape}, "
            f"expected ({n}, {len(data.factor_sizes)}): one row of factor indices per sample"
        )
    return factors.astype(np.int64)


def sample_codes(
    data: GroundTruthData,
    represent: Representation,
    n: int,
    rng: np.random.Generator,
    max_images_per_call: int = 4096,
    cache: GridCodes | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """``n`` factor rows drawn uniformly from the grid and their codes: (codes (n, D), factors (n, K)).

    ``cache``: as ``encode_factors``'s (the same draws either way).
    """
    factors = draw_factors(data, n, rng)  # (n, K)
    return encode_factors(data, represent, factors, max_images_per_call, cache), factors

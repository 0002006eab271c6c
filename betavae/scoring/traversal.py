"""Latent traversals: one latent dimension swept over [-3, 3] with the others fixed, a row per dimension."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from betavae.errors import ConfigError
from betavae.model_api import evaluating, with_label
from betavae.plotting import load_png, save_gif, traversal_figure, traversal_frames
from betavae.scoring.codes import ValidationCodes


def traversal_values(span: float = 3.0, steps: int = 7) -> torch.Tensor:
    """``linspace(-span, span, steps)``: the values a dimension is set to (the study: -3, -2, ..., 3)."""
    if span <= 0 or steps < 2:
        raise ConfigError(f"need span > 0 and steps >= 2, got span={span}, steps={steps}")
    return torch.linspace(-span, span, steps)


@dataclass
class TraversalSettings:
    """How a traversal figure sweeps its dimensions.

    Args:
        top_k: Number of dimensions when none are chosen (the largest mean KL first).
        span: Values run from ``-span`` to ``span``.
        steps: Number of values (odd keeps 0 in the middle).
        relative: Shift each dimension by the values instead of setting it to them.
        gif: Also write the animated GIF.
    """

    top_k: int = 10
    span: float = 3.0
    steps: int = 7
    relative: bool = False
    gif: bool = True

    @property
    def values(self) -> torch.Tensor:
        """``traversal_values(span, steps)``: (steps,)."""
        return traversal_values(self.span, self.steps)


def posterior_of(model: nn.Module, x: torch.Tensor, label: torch.Tensor | None = None) -> Any:
    """``model.encode(x)`` (with ``label`` for conditional models), checked to be a posterior with
    ``mean`` (B, D) and ``kl_per_dim()``.

    Raises:
        TypeError: ``encode`` returned something else (a deterministic code, ...).
    """
    posterior = with_label(model.encode, x, label=label)
    if not (
        isinstance(getattr(posterior, "mean", None), torch.Tensor) and callable(getattr(posterior, "kl_per_dim", None))
    ):
        raise TypeError(
            f"{type(model).__name__}.encode returned {type(posterior).__name__}, not a posterior with mean and "
            "kl_per_dim() (like betavae.models.DiagonalGaussian)"
        )
    return posterior


def mean_kl_per_dim(
    model: nn.Module,
    batches: Iterable[torch.Tensor | dict[str, Any]],
    codes: ValidationCodes | None = None,
    datamodule: Any = None,
) -> torch.Tensor:
    """Mean KL(q(z_d | x) ‖ N(0, 1)) of each latent dimension, (D,) in nats, over batches of normalized
    images (B, C, H, W), or batch dicts with ``"image"`` and optional ``"label"``. With ``codes``, μ and
    the ground truth of the batches (dicts) of ``datamodule`` are also collected there."""
    total, count = None, 0
    device = next(model.parameters()).device
    with evaluating(model):
        for batch in batches:
            x, label = (batch["image"], batch.get("label")) if isinstance(batch, dict) else (batch, None)
            label = label.to(device) if isinstance(label, torch.Tensor) else None
            posterior = posterior_of(model, x.to(device), label)
            kl = posterior.kl_per_dim()  # (B, D)
            if codes is not None and isinstance(batch, dict):
                codes.add(posterior.mean, batch, datamodule)
            total = kl.sum(dim=0) if total is None else total + kl.sum(dim=0)
            count += kl.shape[0]
    if total is None:
        raise ConfigError("mean_kl_per_dim got no batches")
    return (total / count).cpu()


def top_dims(kl: torch.Tensor, k: int) -> list[int]:
    """The ``k`` dimensions with the largest mean KL, largest first (ties: lower index first)."""
    order = torch.sort(kl.detach().cpu(), descending=True, stable=True).indices
    return order[: max(1, min(k, len(order)))].tolist()


def check_dims(dims: Sequence[int], latent_dim: int) -> list[int]:
    """``dims`` as a list, each a valid index of a code of ``latent_dim`` dimensions."""
    dims = [int(d) for d in dims]
    bad = [d for d in dims if not 0 <= d < latent_dim]
    if not dims or bad:
        raise ConfigError(
            f"latent dimensions must be in 0..{latent_dim - 1} (the model's latent size is {latent_dim}); got {dims}"
        )
    return dims


def traverse_latents(
    model: nn.Module,
    z: torch.Tensor,
    dims: Sequence[int],
    values: torch.Tensor,
    relative: bool = False,
    label: torch.Tensor | None = None,
) -> torch.Tensor:
    """Decode ``z`` (D,) with each dimension of ``dims`` set to each of ``values`` (or, ``relative``,
    shifted by it), the others fixed: [0, 1] images (len(dims), len(values), C, H, W). A conditional
    model decodes every image with the class ``label`` (a 0-d or 1-element tensor)."""
    dims = check_dims(dims, z.shape[-1])
    values = values.to(device=z.device, dtype=z.dtype)
    codes = z.reshape(1, 1, -1).repeat(len(dims), len(values), 1)  # (k, S, D)
    for row, d in enumerate(dims):
        codes[row, :, d] = values + z[d] if relative else values
    labels = label.reshape(1).expand(codes.shape[0] * codes.shape[1]) if label is not None else None
    with evaluating(model):
        images = model.to_pixels(with_label(model.decode, codes.flatten(0, 1), label=labels))  # (k * S, C, H, W)
    return images.reshape(len(dims), len(values), *images.shape[1:])


#: mean KL (nats) below which a dimension counts as inactive: its posterior is the prior, decoding it moves nothing
INACTIVE_KL = 0.01


def row_label(dim: int, kl: torch.Tensor | None = None, caption: str | None = None) -> str:
    """A traversal row's label: ``z3``, its mean KL and what it stands for, ``z3 · KL 2.10 · pos_x ↑ (MI 0.78)``.

    A dimension whose mean KL is below ``INACTIVE_KL`` is labelled ``inactive`` instead of by the factor its
    (noise-level) μ happens to correlate with best: its row does not move anything to name.
    """
    parts = [f"z{dim}"]
    if kl is not None:
        parts.append(f"KL {float(kl[dim]):.2f}")
        if float(kl[dim]) < INACTIVE_KL:
            return " · ".join([*parts, "inactive"])
    if caption:
        parts.append(caption)
    return " · ".join(parts)


def render_traversal(
    model: nn.Module,
    reference: torch.Tensor,
    dims: Sequence[int],
    kl: torch.Tensor | None,
    values: torch.Tensor,
    path: str | Path,
    relative: bool = False,
    gif: bool = True,
    title: str | None = None,
    label: torch.Tensor | None = None,
    captions: Mapping[int, str] | None = None,
) -> dict[str, Any]:
    """The traversal figure for one normalized reference image (C, H, W): a panel for its μ and one for
    z = 0, a row per dimension, a column per value. A row is labelled with its index, its mean KL and,
    from ``captions`` (``dimension_captions``), what the dimension predicts best, e.g.
    ``z3 · KL 2.10 · pos_x ↑ (MI 0.78)``. A conditional model encodes and decodes everything with the
    reference's class ``label``.

    Writes ``path`` (PNG) and, with ``gif``, the animated sweep next to it (``.gif``). Returns the panels
    (name → (k, S, C, H, W) images), the figure as an image tensor (3, H, W) and the written paths.
    """
    device = next(model.parameters()).device
    x = reference.unsqueeze(0).to(device)  # (1, C, H, W)
    label = label.reshape(1).to(device) if label is not None else None
    with evaluating(model):
        mu = posterior_of(model, x, label).mean[0]  # (D,)
        recon = model.to_pixels(with_label(model.decode, mu.unsqueeze(0), label=label))[0]
    panels = {
        "from μ of the reference": traverse_latents(model, mu, dims, values, relative, label),
        "from z = 0": traverse_latents(model, torch.zeros_like(mu), dims, values, relative, label),
    }
    labels = [row_label(d, kl, (captions or {}).get(d)) for d in dims]
    path = Path(path)
    pixels = torch.stack([model.to_pixels(x)[0], recon])  # input over its reconstruction
    xlabel = "shift of the dimension" if relative else "value of the dimension"
    traversal_figure(panels, labels, values.tolist(), path, reference=pixels, title=title, xlabel=xlabel)
    out = {"panels": panels, "figure": load_png(path), "png": path}
    if gif:
        out["gif"] = save_gif(traversal_frames(panels), path.with_suffix(".gif"))
    return out

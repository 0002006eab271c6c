"""Latent traversals: one latent dimension swept over [-3, 3] with the others fixed, a row per dimension."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import lightning as L
import torch
from lightning.pytorch.callbacks import Callback
from lightning.pytorch.utilities import rank_zero_warn
from torch import nn

from betavae.callbacks._common import due
from betavae.callbacks._output import log_histogram, log_image
from betavae.callbacks.codes import ValidationCodes, dimension_captions, ground_truth_of
from betavae.errors import ConfigError
from betavae.model_api import api_problem, evaluating, with_label
from betavae.plotting import load_png, save_gif, traversal_figure, traversal_frames
from betavae.runs import trainer_run_dir


def traversal_values(span: float = 3.0, steps: int = 7) -> torch.Tensor:
    """``linspace(-span, span, steps)``: the values a dimension is set to (the study: -3, -2, ..., 3)."""
    if span <= 0 or steps < 2:
        raise ConfigError(f"need span > 0 and steps >= 2, got span={span}, steps={steps}")
    return torch.linspace(-span, span, steps)


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


class LatentTraversal(Callback):
    """Latent traversals of the model being trained, every ``every_n_epochs`` validation epochs.

    For a fixed reference image (the ``reference_index``-th image of the first validation batch) and for
    z = 0, each chosen latent dimension is swept over ``linspace(-span, span, steps)`` with the others
    fixed and decoded. The dimensions are ``dims`` if given, else the ``top_k`` with the largest mean
    KL(q(z_d | x) ‖ N(0, 1)) on that epoch's validation data, so inactive dimensions (KL ≈ 0, they
    decode to the same image) are left out; each row is labelled with its index and KL and, on data with
    ground truth, with the factor or attribute its dimension predicts best and how well
    (``z17 · KL 3.20 · Male ↑ (AUC 0.91)``, ``z3 · KL 2.10 · pos_x ↑ (MI 0.78)``; see ``label_images``).

    On rank zero it appends the mean KL of every dimension to ``kl_per_dim.csv`` (shown on W&B /
    TensorBoard as the histogram ``val/kl_per_dim``) and writes ``images/traversal_epoch=EEE.png`` (and
    ``.gif``, the animated sweep) in the
    run directory and shows the figure on W&B / TensorBoard as ``val/traversal``. The KL sums are
    gathered from every process. The model's train/eval mode and the RNG state are left as they were.
    Models whose ``encode`` returns no posterior, or without ``decode``, get one warning and no figure.

    Args:
        every_n_epochs: Period in validation epochs (also after the last epoch).
        top_k: Number of dimensions when ``dims`` is not given.
        dims: Latent dimensions to show, in this order (e.g. ``[11, 16, 31]``); ``None`` ranks them by KL.
        span: Values run from ``-span`` to ``span``.
        steps: Number of values (odd keeps 0 in the middle).
        relative: Shift each dimension by the values instead of setting it to them (the middle column is
            then the reference's own reconstruction).
        reference_index: Which image of the first validation batch is the reference.
        gif: Also write the animated GIF.
        label_images: On data with ground truth (factors, attributes, class labels), label each row with
            what its dimension predicts best (``betavae.disentanglement.dimension_attributes``), from μ
            and the ground truth of at most this many validation images (gathered from every process);
            ``None``: no such labels.
    """

    def __init__(
        self,
        every_n_epochs: int = 1,
        top_k: int = 10,
        dims: list[int] | None = None,
        span: float = 3.0,
        steps: int = 7,
        relative: bool = False,
        reference_index: int = 0,
        gif: bool = True,
        label_images: int | None = 5000,
    ) -> None:
        if label_images is not None and label_images < 2:
            raise ConfigError(f"label_images must be at least 2, or None (no labels); got {label_images}")
        if every_n_epochs < 1 or top_k < 1 or reference_index < 0:
            raise ConfigError(
                f"need every_n_epochs >= 1, top_k >= 1, reference_index >= 0; got {every_n_epochs}, {top_k}, "
                f"{reference_index}"
            )
        if dims is not None and (not dims or any(d < 0 for d in dims)):
            raise ConfigError(f"dims must be a non-empty list of latent indices >= 0, or None; got {dims}")
        self.values = traversal_values(span, steps)  # checks span and steps
        self.every_n_epochs = every_n_epochs
        self.top_k = top_k
        self.dims = list(dims) if dims is not None else None
        self.span = span
        self.steps = steps
        self.relative = relative
        self.reference_index = reference_index
        self.gif = gif
        self.label_images = label_images
        self.codes = ValidationCodes(label_images) if label_images is not None else None
        self.labelled = False  # whether this run's data has ground truth to label rows with
        self.last_captions: dict[int, str] = {}  # what the last figure's rows were labelled with
        self.disabled: str | None = None
        self.reference: torch.Tensor | None = None  # (C, H, W), normalized
        self.reference_label: torch.Tensor | None = None  # its class, for conditional models
        self._kl_sum: torch.Tensor | None = None
        self._count = 0
        self.last_dims: list[int] | None = None  # what the last figure showed
        self.last_kl: torch.Tensor | None = None  # (D,) mean KL per dimension behind it
        self._run_dir: Path | None = None

    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        self._run_dir = trainer_run_dir(trainer)  # on every rank: trainer.log_dir is a collective under DDP
        problem = api_problem(pl_module, encode=1, decode=1, to_pixels=1)
        self._disable(problem)
        self.labelled = self.codes is not None and ground_truth_of(trainer.datamodule)[0] is not None

    def _record_kl(self, trainer: L.Trainer, kl: torch.Tensor) -> None:
        """Append the mean KL per dimension to ``kl_per_dim.csv`` (epoch, step, one column per dimension)
        and show its distribution as ``val/kl_per_dim`` on W&B / TensorBoard."""
        path = (self._run_dir or trainer_run_dir(trainer)) / "kl_per_dim.csv"
        path.parent.mkdir(parents=True, exist_ok=True)
        header = not path.is_file()
        with path.open("a") as f:
            if header:
                f.write(",".join(["epoch", "step", *(f"z{d}" for d in range(kl.numel()))]) + "\n")
            f.write(
                ",".join([str(trainer.current_epoch), str(trainer.global_step), *(f"{v:.6g}" for v in kl.tolist())])
            )
            f.write("\n")
        log_histogram(trainer, "val/kl_per_dim", kl)

    def _captions(self, trainer: L.Trainer, observed: tuple[Any, Any] | None) -> dict[int, str]:
        """What each dimension predicts best, from the gathered validation codes; ``{}`` (one warning) when
        that cannot be computed."""
        if observed is None:
            return {}
        try:
            return dimension_captions(*observed, self.codes.names, trainer.datamodule)
        except ValueError as err:
            rank_zero_warn(f"LatentTraversal: rows without attribute labels at epoch {trainer.current_epoch}: {err}")
            return {}

    def _disable(self, problem: str | None) -> None:
        if problem and problem != self.disabled:
            rank_zero_warn(f"LatentTraversal: {problem}; no traversals this run.")
        self.disabled = problem

    def _collecting(self, trainer: L.Trainer) -> bool:
        return not self.disabled and not trainer.sanity_checking and due(trainer, self.every_n_epochs)

    def on_validation_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._kl_sum, self._count = None, 0
        if self.labelled:
            self.codes.reset(trainer)

    def on_validation_batch_end(
        self,
        trainer: L.Trainer,
        pl_module: L.LightningModule,
        outputs: Any,
        batch: Any,
        batch_idx: int,
        dataloader_idx: int = 0,
    ) -> None:
        if dataloader_idx != 0 or not self._collecting(trainer):
            return
        x, labels = batch["image"], batch.get("label")  # (B, C, H, W), normalized; (B,) or None
        labels = labels if isinstance(labels, torch.Tensor) else None
        if batch_idx == 0 and self.reference is None:
            i = min(self.reference_index, len(x) - 1)
            self.reference = x[i].detach().cpu()
            self.reference_label = labels[i].detach().cpu() if labels is not None else None
        with evaluating(pl_module):
            try:
                posterior = posterior_of(pl_module, x, labels)
            except TypeError as err:
                self._disable(str(err))
                return
            kl = posterior.kl_per_dim().sum(dim=0)  # (D,)
        if self.labelled:
            self.codes.add(posterior.mean, batch, trainer.datamodule)  # μ (B, D) and the batch's ground truth
        self._kl_sum = kl if self._kl_sum is None else self._kl_sum + kl
        self._count += x.shape[0]

    def on_validation_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if not self._collecting(trainer) or self._kl_sum is None:
            return
        total = trainer.strategy.reduce(self._kl_sum, reduce_op="sum")  # every process's images
        count = trainer.strategy.reduce(torch.tensor(float(self._count), device=total.device), reduce_op="sum")
        observed = self.codes.gather(trainer) if self.labelled else None  # a collective: every rank
        if not trainer.is_global_zero or self.reference is None:
            return
        kl = (total / count).cpu()
        self._record_kl(trainer, kl)
        dims = check_dims(self.dims, kl.numel()) if self.dims is not None else top_dims(kl, self.top_k)
        self.last_dims, self.last_kl = dims, kl
        self.last_captions = self._captions(trainer, observed)
        epoch = trainer.current_epoch
        out = render_traversal(
            pl_module,
            self.reference,
            dims,
            kl,
            self.values,
            (self._run_dir or trainer_run_dir(trainer)) / "images" / f"traversal_epoch={epoch:03d}.png",
            relative=self.relative,
            gif=self.gif,
            title=f"{type(pl_module).__name__}, epoch {epoch}",
            label=self.reference_label,
            captions=self.last_captions,
        )
        log_image(trainer, "val/traversal", out["figure"], caption=f"epoch {epoch}, dims {dims}")

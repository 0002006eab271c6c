"""``traverse``: the study's manipulation figure for a checkpoint and chosen latent dimensions."""

from __future__ import annotations

import json
from collections.abc import Sequence
from itertools import islice
from pathlib import Path
from typing import Any

import torch
from torch import nn

from betavae.errors import ConfigError
from betavae.evaluation.evaluate import checkpoint_path, load_weights, run_dir_of, validation_batches
from betavae.loaded_checkpoint import LoadedCheckpoint
from betavae.model_api import api_problem
from betavae.scoring.codes import ValidationCodes, dimension_captions, ground_truth_of
from betavae.scoring.traversal import TraversalSettings, check_dims, mean_kl_per_dim, render_traversal, top_dims


def parse_dims(dims: Sequence[int] | str | int | None) -> list[int] | None:
    """Latent dimensions from ``[11, 16, 31]``, ``"11,16,31"`` or ``"11 16 31"``; ``None`` stays ``None``.

    Raises:
        ValueError: something that is not a list of non-negative integers; the message shows it.
    """
    if dims is None:
        return None
    if isinstance(dims, int):
        dims = [dims]
    if isinstance(dims, str):
        parts = dims.replace(",", " ").split()
        try:
            dims = [int(p) for p in parts]
        except ValueError:
            raise ConfigError(f"dims must be latent indices like 11,16,31; got {dims!r}") from None
    dims = [int(d) for d in dims]
    if not dims or any(d < 0 for d in dims):
        raise ConfigError(f"dims must be a non-empty list of latent indices >= 0; got {dims}")
    return dims


def load_reference(path: str | Path, model: nn.Module, crop_size: int | None = None) -> torch.Tensor:
    """One image file, decoded like the training data, normalized: (C, H, W)."""
    from betavae.data import load_image

    pixels = load_image(Path(path).expanduser(), model.in_channels, model.image_size, crop_size).float() / 255
    return model.normalize(pixels.unsqueeze(0).to(next(model.parameters()).device))[0]


def traverse_checkpoint(
    model: nn.Module,
    datamodule: Any,
    ckpt_path: str | Path | LoadedCheckpoint,
    dims: Sequence[int] | str | None = None,
    image: str | Path | None = None,
    top_k: int | None = None,
    settings: TraversalSettings | None = None,
    crop_size: int | None = None,
    kl_images: int | None = 5000,
    device: torch.device | str = "cpu",
    output_dir: str | Path | None = None,
    weights_only: bool = True,
) -> dict[str, Any]:
    """Write the traversal figure (PNG, GIF) and a JSON of the dimensions and their KL for a checkpoint.

    On data with ground truth (factors, attributes, class labels) each row also names the factor or
    attribute its dimension predicts best, measured on the same validation images as the KL
    (``betavae.disentanglement.dimension_attributes``); the JSON keeps these captions for every dimension.

    Args:
        model: The model, built with the checkpoint's hyperparameters; its weights are loaded here.
        datamodule: The run's data module: the mean KL per dimension is measured on its validation split,
            whose first image is the reference unless ``image`` is given.
        ckpt_path: The checkpoint: a file, or the CLI's ``LoadedCheckpoint`` of it (not read again).
        dims: The dimensions to show (``[11, 16, 31]`` or ``"11,16,31"``); ``None``: the ``top_k`` by KL.
        image: An image file as the reference.
        top_k: Dimensions when ``dims`` is ``None``; default: ``settings.top_k``.
        settings: Span, steps, the relative mode and the GIF switch (the run's ``LatentTraversal.settings``);
            ``None``: the defaults.
        crop_size: Center crop (source pixels) of ``image`` before resizing.
        kl_images: Validation images the KL is averaged over (the first ones); ``None``: all.
        device: Where to run.
        output_dir: Where the files go; ``None``: ``evaluation/`` in the checkpoint's run folder.
        weights_only: Passed to ``torch.load`` (see ``load_weights``).
    """
    problem = api_problem(model, encode=1, decode=1, to_pixels=1)
    if problem:
        raise ConfigError(f"traverse: {problem}: a traversal starts from an image's encoding (a GAN has no encoder)")
    settings = settings if settings is not None else TraversalSettings()
    dims = parse_dims(dims)
    info = load_weights(model, ckpt_path, weights_only)
    ckpt_path = checkpoint_path(ckpt_path)
    model.to(device)
    batches = validation_batches(datamodule)
    if kl_images is not None:
        batch_size = max(1, int(getattr(datamodule, "batch_size", 64)))
        batches = islice(batches, -(-kl_images // batch_size))
    labelled = ground_truth_of(datamodule)[0] is not None
    codes = ValidationCodes(max(2, kl_images) if kl_images is not None else None) if labelled else None
    kl = mean_kl_per_dim(model, batches, codes, datamodule)
    observed = codes.gather(None) if codes is not None else None
    captions = dimension_captions(*observed, codes.names, datamodule) if observed is not None else {}
    if dims is None:
        dims = top_dims(kl, top_k if top_k is not None else settings.top_k)
    dims = check_dims(dims, kl.numel())
    label = None
    if image is not None:
        reference, name = load_reference(image, model, crop_size), Path(image).stem
    else:
        first = next(iter(validation_batches(datamodule)))
        reference, name = first["image"][0], "val0"
        label = first["label"][0] if isinstance(first.get("label"), torch.Tensor) else None
    out = Path(output_dir).expanduser() if output_dir is not None else run_dir_of(ckpt_path) / "evaluation"
    stem = f"traversal_{Path(ckpt_path).stem}_{name}_dims-{'-'.join(map(str, dims))}"
    rendered = render_traversal(
        model,
        reference,
        dims,
        kl,
        settings.values,
        out / f"{stem}.png",
        relative=settings.relative,
        gif=settings.gif,
        title=f"{type(model).__name__}, epoch {info['epoch']}, reference {name}",
        label=label,
        captions=captions,
    )
    record = {
        "checkpoint": str(Path(ckpt_path).expanduser().resolve()),
        **info,
        "reference": str(Path(image).expanduser().resolve()) if image is not None else "first validation image",
        "dims": dims,
        "kl": {str(d): round(float(kl[d]), 4) for d in dims},
        "kl_all_dims": [round(float(v), 4) for v in kl],
        "captions": {str(d): c for d, c in captions.items()},
        "values": [round(float(v), 4) for v in settings.values],
        "relative": settings.relative,
        "png": str(rendered["png"]),
        "gif": str(rendered["gif"]) if "gif" in rendered else None,
    }
    (out / f"{stem}.json").write_text(json.dumps(record, indent=2) + "\n")
    record["json"] = str(out / f"{stem}.json")
    return record

"""``evaluate``: a checkpoint's row of the study's table: mean SSIM and PSNR, FID of prior samples, and
the disentanglement metrics where the data has ground truth.

Reconstructions are scored exactly as ``ReconstructionMetrics`` scores them during training (from μ,
in [0, 1], data range 1; a model that corrupts its input reconstructs the corrupted image, each image's
corruption seeded by its dataset index as in validation, and the corrupted input's own scores are
reported beside), on the validation split or on a folder of images the model never saw; FID/KID as the
``FID`` callback does, with its settings, against the validation split. Models without ``reconstruct``
(a GAN) get FID/KID only. The disentanglement metrics as the ``DisentanglementMetrics`` callback does
(``betavae.evaluation.disentanglement``).
"""

from __future__ import annotations

import datetime
import json
import time
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any

import torch
from torch import nn

from betavae.beta_rule import model_beta
from betavae.checkpoints import check_fits, load_checkpoint
from betavae.data.bad_files import skip_bad_files
from betavae.errors import ConfigError
from betavae.evaluation.disentanglement import timed_disentanglement
from betavae.evaluation.tables import markdown_table
from betavae.loaded_checkpoint import LoadedCheckpoint
from betavae.model_api import api_problem, evaluating, model_input, with_label
from betavae.run_folders import run_dir_of
from betavae.run_labels import datamodule_label
from betavae.scoring.fid import FIDSettings, reference_description
from betavae.scoring.fid import score_samples as sample_scores
from betavae.scoring.reconstruction import reconstruction_metrics

METRIC_NOTE = (
    "images in [0, 1] (model.to_pixels), data range 1; reconstructions decode μ; PSNR: mean over images of "
    "each image's PSNR; SSIM: Gaussian window σ 1.5 (11×11), mean over each image's valid region, then over "
    "images (= skimage structural_similarity(gaussian_weights=True, sigma=1.5, use_sample_covariance=False))"
)


def checkpoint_path(ckpt: str | Path | LoadedCheckpoint) -> Path:
    """The file of a checkpoint given as a path or as a ``LoadedCheckpoint``."""
    return ckpt.path if isinstance(ckpt, LoadedCheckpoint) else Path(ckpt)


def load_weights(
    model: nn.Module, ckpt_path: str | Path | LoadedCheckpoint, weights_only: bool = True
) -> dict[str, Any]:
    """Load a Lightning checkpoint's ``state_dict`` into ``model`` (strictly); returns its epoch and step.

    ``ckpt_path`` is a file, or a ``LoadedCheckpoint`` the CLI already read (not read again unless it holds
    no contents). ``weights_only=False`` lets ``torch.load`` unpickle arbitrary objects: for trusted files only.

    Raises:
        MissingFileError: the checkpoint does not exist.
        CheckpointError: it is not a readable checkpoint, or it does not fit ``model`` (both shapes named).
    """
    read = ckpt_path.contents if isinstance(ckpt_path, LoadedCheckpoint) else None
    ckpt_path = checkpoint_path(ckpt_path)
    checkpoint = read if read is not None else load_checkpoint(ckpt_path, weights_only=weights_only)
    check_fits(model, checkpoint, ckpt_path)
    model.load_state_dict(checkpoint["state_dict"])
    return {"epoch": checkpoint.get("epoch"), "global_step": checkpoint.get("global_step")}


def validation_batches(datamodule: Any) -> Iterator[dict[str, Any]]:
    """The validation split's batches, in order, prepared for a model: dicts with the normalized
    ``"image"`` (B, C, H, W) and, where the data has them, ``"label"`` and more."""
    datamodule.setup("validate")
    yield from datamodule.eval_batches("val")


def folder_batches(
    folder: str | Path,
    model: nn.Module,
    batch_size: int,
    crop_size: int | None = None,
    bad: list[tuple[str, str]] | None = None,
) -> Iterator[dict[str, Any]]:
    """Every image under ``folder`` as batches ``{"image": (B, C, H, W), "index": (B,)}``, decoded like the
    training data (``betavae.data.load_image`` at the model's channels and size, optional center crop),
    normalized with ``model.normalize``; ``"index"`` is each file's position in the sorted listing (the
    seed of its corruption, for models that corrupt their input). Files that cannot be decoded and subfolders
    that cannot be listed are skipped and appended to ``bad`` (relative path, reason), the rule of ``fit``."""
    import functools

    from betavae.data import find_images, load_image
    from betavae.data.bad_files import try_decode

    folder = Path(folder).expanduser()
    bad = [] if bad is None else bad
    files = find_images(folder, unreadable=bad)
    decode = functools.partial(load_image, channels=model.in_channels, image_size=model.image_size, crop_size=crop_size)
    for start in range(0, len(files), batch_size):
        images, index = [], []
        for i, file in enumerate(files[start : start + batch_size], start):
            image, error = try_decode(decode, file)
            if error is None:
                images.append(image)
                index.append(i)
            else:
                bad.append((file.relative_to(folder).as_posix(), " ".join(error.split())))
        if images:
            pixels = torch.stack(images).float()  # (B, C, H, W)
            yield {
                "image": model.normalize(pixels.div(255).to(next(model.parameters()).device)),
                "index": torch.tensor(index),
            }


def score_reconstructions(model: nn.Module, batches: Iterable[dict[str, Any]]) -> dict[str, Any]:
    """Mean ``psnr`` (dB) and ``ssim`` of ``model.reconstruct`` over batches (dicts with the normalized
    ``"image"``, optional ``"label"`` and ``"index"``), with the number of images ``n``, exactly as
    ``ReconstructionMetrics`` scores validation.

    A model that corrupts its input (denoising, masking, super-resolution) reconstructs the corrupted
    images, each corrupted with the seed of its dataset ``"index"`` as in its validation loss and
    ``val/psnr``; the corrupted input's own scores against the clean images are added as ``psnr_input``
    and ``ssim_input`` (``None`` for other models), the baseline the model has to beat.
    """
    device = next(model.parameters()).device
    metrics = reconstruction_metrics().to(device)
    input_metrics = reconstruction_metrics().to(device)
    n = 0
    with evaluating(model):
        for batch in batches:
            x, label = batch["image"].to(device), batch.get("label")
            label = label.to(device) if isinstance(label, torch.Tensor) else None
            x_in = model_input(model, {**batch, "image": x})  # x itself unless the model corrupts its input
            clean = model.to_pixels(x)
            metrics.update(model.to_pixels(with_label(model.reconstruct, x_in, label=label)), clean)
            if x_in is not x:
                input_metrics.update(model.to_pixels(x_in), clean)
            n += x.shape[0]
    if n == 0:
        raise ConfigError("no images to evaluate")
    scores: dict[str, Any] = {k: float(v) for k, v in metrics.compute().items()}
    corrupted = input_metrics["ssim"].update_called
    inputs = {k: float(v) for k, v in input_metrics.compute().items()} if corrupted else {}
    return {**scores, "psnr_input": inputs.get("psnr"), "ssim_input": inputs.get("ssim"), "n": n}


def score_samples(
    model: nn.Module, fid: FIDSettings, reference: Iterable[dict[str, Any]], description: str = ""
) -> dict[str, Any]:
    """FID/KID of ``fid.num_samples`` prior samples against the ``reference`` batches' images, with ``fid``'s
    settings (``betavae.scoring.fid.score_samples``; ``description`` names the reference for its cache)."""
    return sample_scores(model, fid, reference, description=description)


def evaluate_checkpoint(
    model: nn.Module,
    datamodule: Any,
    ckpt_path: str | Path | LoadedCheckpoint,
    images: str | Path | None = None,
    crop_size: int | None = None,
    fid: FIDSettings | None = None,
    device: torch.device | str = "cpu",
    output_dir: str | Path | None = None,
    weights_only: bool = True,
    disentanglement: Mapping[str, Any] | None = None,
    skip_fid: bool = False,
) -> dict[str, Any]:
    """Score a checkpoint and write ``<output_dir>/<checkpoint>[__<folder>].json`` and ``.md``.

    Args:
        model: The model, built with the checkpoint's hyperparameters; its weights are loaded here.
        datamodule: The run's data module: the validation split is scored (unless ``images``) and is
            the FID reference.
        ckpt_path: The checkpoint: a file, or the CLI's ``LoadedCheckpoint`` of it (not read again).
        images: A folder of images to score instead of the validation split.
        crop_size: Center crop (source pixels) of the folder images before resizing.
        fid: FID settings (the run's ``FID.settings``); ``None``: the defaults (2,400 samples).
        device: Where to run.
        output_dir: Where the files go; ``None``: ``evaluation/`` in the checkpoint's run folder.
        weights_only: Passed to ``torch.load`` (see ``load_weights``).
        disentanglement: Arguments of ``score_disentanglement`` (``preset``, ``seed``, ``interventions``,
            ``n_jobs``, ``dci_estimator``); ``None``: the default preset, seed 0, gradient-boosted trees. They
            run on the data module whatever ``images`` says: its factor grid, or its validation split's
            attributes.
        skip_fid: Score no samples (``fid`` and ``kid`` are ``None``, ``fid_note`` says why).

    Returns:
        The JSON record: dataset, model, β, ``ssim``, ``psnr``, ``n`` (``None`` for a model without
        ``reconstruct``), ``ssim_input`` and ``psnr_input`` (the corrupted input's scores, for models that
        corrupt their input), ``fid``, ``kid``, their sample counts
        and reference, the disentanglement metrics (``mig``, ``sap``, ``dci_*``, ``factorvae_score``,
        ``betavae_score``, ``modularity``, ``explicitness``; ``None`` without ground truth) with their
        preset, DCI's estimator, seed and basis, the checkpoint's epoch and step, its run, timings (wall
        seconds, and the disentanglement metrics' CPU seconds), and the Markdown row (``markdown``).
    """
    fid = fid if fid is not None else FIDSettings()
    info = load_weights(model, ckpt_path, weights_only)
    ckpt_path = checkpoint_path(ckpt_path)
    model.to(device)
    hparams = dict(getattr(model, "hparams", {}) or {})
    start = time.perf_counter()
    skipped: list[tuple[str, str]] = []  # unreadable files of --images: skipped, counted, listed
    skipped_list = None
    no_reconstruction = api_problem(model, reconstruct=1, to_pixels=1)
    if no_reconstruction:  # a GAN: samples only
        recon: dict[str, Any] = {"n": None}
        evaluated_on = f"no reconstructions ({no_reconstruction})"
    elif images is not None:
        folder = Path(images).expanduser()
        batch_size = getattr(datamodule, "batch_size", 64)
        out = Path(output_dir).expanduser() if output_dir is not None else run_dir_of(ckpt_path) / "evaluation"
        keep = out / f"{Path(ckpt_path).stem}__{folder.name}.bad_images.txt"
        try:
            recon = score_reconstructions(model, folder_batches(folder, model, batch_size, crop_size, skipped))
        except ConfigError:  # no image could be read: the same message as too many bad ones
            recon = {"n": 0}
        max_bad = getattr(datamodule, "max_bad_fraction", 0.01)
        skipped_list = skip_bad_files(skipped, recon["n"] + len(skipped), folder, max_bad, keep)
        evaluated_on = f"images: {folder.name or folder}"
    else:
        recon = score_reconstructions(model, validation_batches(datamodule))
        evaluated_on = "validation split"
    recon_seconds = time.perf_counter() - start
    start = time.perf_counter()
    if skip_fid:
        samples: dict[str, Any] = {"fid_note": "not computed (skip_fid)"}
    else:
        described = reference_description(datamodule, fid)
        samples = score_samples(model, fid, validation_batches(datamodule), described)
    fid_seconds = time.perf_counter() - start
    scores, dis_seconds, dis_cpu = timed_disentanglement(
        model, datamodule, validation_batches(datamodule), **(disentanglement or {})
    )
    dataset = datamodule_label(datamodule)
    result: dict[str, Any] = {
        "dataset": dataset,
        "beta": model_beta(type(model).__name__, hparams),
        "kld_weight": hparams.get("kld_weight"),
        "model": type(model).__name__,
        "latent_dim": getattr(model, "latent_dim", None),
        "checkpoint": str(Path(ckpt_path).expanduser().resolve()),
        "run": str(run_dir_of(ckpt_path)),
        **info,
        "evaluated_on": evaluated_on,
        "images": str(Path(images).expanduser().resolve()) if images is not None else None,
        "images_skipped": len(skipped) if images is not None else None,
        "images_skipped_list": str(skipped_list) if skipped_list else None,
        "n": recon["n"],
        "ssim": recon.get("ssim"),
        "psnr": recon.get("psnr"),
        "ssim_input": recon.get("ssim_input"),
        "psnr_input": recon.get("psnr_input"),
        "metric_note": METRIC_NOTE,
        "fid": samples.get("fid"),
        "kid": samples.get("kid"),
        "kid_std": samples.get("kid_std"),
        "fid_num_samples": samples.get("num_fake"),
        "fid_num_real": samples.get("num_real"),
        "fid_reference": f"{dataset} validation split" if "fid" in samples else None,
        "fid_feature_extractor": samples.get("feature_extractor"),
        "fid_note": samples.get("fid_note"),
        "fid_reference_cache": samples.get("reference_cache"),
        "fid_reference_cached": samples.get("reference_cached"),
        **scores,
        "seconds": {
            "reconstructions": round(recon_seconds, 2),
            "fid": round(fid_seconds, 2),
            "disentanglement": round(dis_seconds, 2),
            "disentanglement_cpu": round(dis_cpu, 2),
        },
        "created": datetime.datetime.now().isoformat(timespec="seconds"),
    }
    result["markdown"] = markdown_table([result])
    out = Path(output_dir).expanduser() if output_dir is not None else run_dir_of(ckpt_path) / "evaluation"
    out.mkdir(parents=True, exist_ok=True)
    stem = Path(ckpt_path).stem + (f"__{Path(images).expanduser().name}" if images is not None else "")
    (out / f"{stem}.json").write_text(json.dumps(result, indent=2, ensure_ascii=False) + "\n")
    (out / f"{stem}.md").write_text(result["markdown"] + "\n")
    result["files"] = [str(out / f"{stem}.json"), str(out / f"{stem}.md")]
    return result

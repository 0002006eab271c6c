"""``evaluate``: a checkpoint's row of the study's table: mean SSIM and PSNR, and FID of prior samples.

Reconstructions are scored exactly as ``ReconstructionMetrics`` scores them during training (from μ,
in [0, 1], data range 1; a model that corrupts its input reconstructs the corrupted image, each image's
corruption seeded by its dataset index as in validation, and the corrupted input's own scores are
reported beside), on the validation split or on a folder of images the model never saw; FID/KID as the
``FID`` callback does, with its settings, against the validation split. Models without ``reconstruct``
(a GAN) get FID/KID only.
"""

from __future__ import annotations

import datetime
import json
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from lightning.pytorch.utilities import rank_zero_warn
from torch import nn

from betavae.callbacks._common import api_problem, datamodule_label, evaluating, model_input, with_label
from betavae.callbacks.fid import FID, add_samples
from betavae.callbacks.metrics import reconstruction_metrics

# (header, key) of the study's table (dataset, β, SSIM, PSNR dB, FID) and what each number rests on
TABLE_COLUMNS: tuple[tuple[str, str], ...] = (
    ("dataset", "dataset"),
    ("β", "beta"),
    ("SSIM", "ssim"),
    ("PSNR (dB)", "psnr"),
    ("FID", "fid"),
    ("n", "n"),
    ("evaluated on", "evaluated_on"),
    ("FID samples / reference", "fid_basis"),
)
# added to a table when one of its rows corrupts its input (denoising, super-resolution): the input's scores
INPUT_COLUMNS: tuple[tuple[str, str], ...] = (("SSIM of input", "ssim_input"), ("PSNR of input (dB)", "psnr_input"))
METRIC_NOTE = (
    "images in [0, 1] (model.to_pixels), data range 1; reconstructions decode μ; PSNR: mean over images of "
    "each image's PSNR; SSIM: Gaussian window σ 1.5 (11×11), mean over each image's valid region, then over "
    "images (= skimage structural_similarity(gaussian_weights=True, sigma=1.5, use_sample_covariance=False))"
)


def run_dir_of(ckpt_path: str | Path) -> Path:
    """The run folder of a checkpoint: the parent of its ``checkpoints/`` folder (else its own folder)."""
    folder = Path(ckpt_path).expanduser().resolve().parent
    return folder.parent if folder.name == "checkpoints" else folder


def load_weights(model: nn.Module, ckpt_path: str | Path, weights_only: bool = True) -> dict[str, Any]:
    """Load a Lightning checkpoint's ``state_dict`` into ``model`` (strictly); returns its epoch and step.

    ``weights_only=False`` lets ``torch.load`` unpickle arbitrary objects: for trusted files only.
    """
    path = Path(ckpt_path).expanduser()
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint {path} does not exist")
    checkpoint = torch.load(path, map_location="cpu", weights_only=weights_only)
    if "state_dict" not in checkpoint:
        raise ValueError(f"{path} is not a Lightning checkpoint (no state_dict; keys: {sorted(checkpoint)[:8]})")
    model.load_state_dict(checkpoint["state_dict"])
    return {"epoch": checkpoint.get("epoch"), "global_step": checkpoint.get("global_step")}


def validation_batches(datamodule: Any) -> Iterator[dict[str, Any]]:
    """The validation split's batches, in order, as the data module serves them: dicts with the
    normalized ``"image"`` (B, C, H, W) and, where the data has them, ``"label"`` and more."""
    datamodule.setup("validate")
    yield from datamodule.val_dataloader()


def folder_batches(
    folder: str | Path, model: nn.Module, batch_size: int, crop_size: int | None = None
) -> Iterator[dict[str, Any]]:
    """Every image under ``folder`` as batches ``{"image": (B, C, H, W), "index": (B,)}``, decoded like the
    training data (``betavae.data.load_image`` at the model's channels and size, optional center crop),
    normalized with ``model.normalize``; ``"index"`` is each file's position in the sorted listing (the
    seed of its corruption, for models that corrupt their input)."""
    from betavae.data import find_images, load_image

    files = find_images(folder)
    for start in range(0, len(files), batch_size):
        chunk = files[start : start + batch_size]
        pixels = torch.stack([load_image(f, model.in_channels, model.image_size, crop_size) for f in chunk]).float()
        yield {
            "image": model.normalize(pixels.div(255).to(next(model.parameters()).device)),
            "index": torch.arange(start, start + len(chunk)),
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
        raise ValueError("no images to evaluate")
    scores: dict[str, Any] = {k: float(v) for k, v in metrics.compute().items()}
    corrupted = input_metrics["ssim"].update_called
    inputs = {k: float(v) for k, v in input_metrics.compute().items()} if corrupted else {}
    return {**scores, "psnr_input": inputs.get("psnr"), "ssim_input": inputs.get("ssim"), "n": n}


def score_samples(model: nn.Module, fid: FID, reference: Iterable[dict[str, Any]]) -> dict[str, Any]:
    """FID/KID of ``fid.num_samples`` prior samples against the ``reference`` batches' images, with
    ``fid``'s settings (feature network, sample count, seed, reference cap). Keys as ``GenerativeScores``
    plus ``fid_note`` (why FID is missing, if it is) and ``feature_extractor``."""
    problem = fid.prepare(model)  # raises InceptionWeightsError when missing and on_missing is "error"
    if problem:
        rank_zero_warn(f"evaluate: no FID: {problem}")
        return {"fid_note": problem.splitlines()[0]}
    scores = fid.scores.to(next(model.parameters()).device)
    scores.reset()
    if scores.num_real == 0:  # the reference features are computed once per FID object
        for batch in reference:
            pixels = model.to_pixels(batch["image"].to(next(model.parameters()).device))
            if fid.max_real_images is not None:
                pixels = pixels[: fid.max_real_images - scores.num_real]
            if len(pixels) == 0:
                break
            scores.update(pixels, real=True)
    add_samples(model, scores, fid.num_samples, fid.batch_size, fid.seed)
    result = scores.compute(fid.seed)
    scores.reset()
    return {**result, "feature_extractor": fid.describe_extractor()}


def evaluate_checkpoint(
    model: nn.Module,
    datamodule: Any,
    ckpt_path: str | Path,
    images: str | Path | None = None,
    crop_size: int | None = None,
    fid: FID | None = None,
    device: torch.device | str = "cpu",
    output_dir: str | Path | None = None,
    weights_only: bool = True,
) -> dict[str, Any]:
    """Score a checkpoint and write ``<output_dir>/<checkpoint>[__<folder>].json`` and ``.md``.

    Args:
        model: The model, built with the checkpoint's hyperparameters; its weights are loaded here.
        datamodule: The run's data module: the validation split is scored (unless ``images``) and is
            the FID reference.
        ckpt_path: The checkpoint.
        images: A folder of images to score instead of the validation split.
        crop_size: Center crop (source pixels) of the folder images before resizing.
        fid: FID settings (the run's ``FID`` callback); ``None``: the defaults (2,400 samples).
        device: Where to run.
        output_dir: Where the files go; ``None``: ``evaluation/`` in the checkpoint's run folder.
        weights_only: Passed to ``torch.load`` (see ``load_weights``).

    Returns:
        The JSON record: dataset, β, ``ssim``, ``psnr``, ``n`` (``None`` for a model without
        ``reconstruct``), ``ssim_input`` and ``psnr_input`` (the corrupted input's scores, for models that
        corrupt their input), ``fid``, ``kid``, their sample counts and reference, the checkpoint's epoch and
        step, timings, and the Markdown row (``markdown``).
    """
    fid = fid if fid is not None else FID()
    info = load_weights(model, ckpt_path, weights_only)
    model.to(device)
    hparams = dict(getattr(model, "hparams", {}) or {})
    start = time.perf_counter()
    no_reconstruction = api_problem(model, reconstruct=1, to_pixels=1)
    if no_reconstruction:  # a GAN: samples only
        recon: dict[str, Any] = {"n": None}
        evaluated_on = f"no reconstructions ({no_reconstruction})"
    elif images is not None:
        folder = Path(images).expanduser()
        batch_size = getattr(datamodule, "batch_size", 64)
        recon = score_reconstructions(model, folder_batches(folder, model, batch_size, crop_size))
        evaluated_on = f"images: {folder.name or folder}"
    else:
        recon = score_reconstructions(model, validation_batches(datamodule))
        evaluated_on = "validation split"
    recon_seconds = time.perf_counter() - start
    start = time.perf_counter()
    samples = score_samples(model, fid, validation_batches(datamodule))
    dataset = datamodule_label(datamodule)
    result: dict[str, Any] = {
        "dataset": dataset,
        "beta": hparams.get("beta"),
        "kld_weight": hparams.get("kld_weight"),
        "model": type(model).__name__,
        "latent_dim": getattr(model, "latent_dim", None),
        "checkpoint": str(Path(ckpt_path).expanduser().resolve()),
        **info,
        "evaluated_on": evaluated_on,
        "images": str(Path(images).expanduser().resolve()) if images is not None else None,
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
        "seconds": {"reconstructions": round(recon_seconds, 2), "fid": round(time.perf_counter() - start, 2)},
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


def _fmt(value: Any, digits: int) -> str:
    if value is None or value == "":
        return "—"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


def table_cells(result: Mapping[str, Any]) -> dict[str, str]:
    """One result's cells of the study's table, formatted (SSIM 3 decimals, PSNR and FID 2, β as given; a
    model without β, such as the DCGAN, is named in the β column)."""
    beta = result.get("beta")
    basis = (
        f"{result['fid_num_samples']} / {result.get('fid_reference') or '?'} (n={result.get('fid_num_real')})"
        if result.get("fid_num_samples")
        else "—"
    )
    return {
        "dataset": _fmt(result.get("dataset"), 0),
        "beta": f"{beta:g}" if isinstance(beta, (int, float)) else _fmt(beta or result.get("model"), 0),
        "ssim": _fmt(result.get("ssim"), 3),
        "psnr": _fmt(result.get("psnr"), 2),
        "fid": _fmt(result.get("fid"), 2),
        "n": _fmt(result.get("n"), 0),
        "evaluated_on": _fmt(result.get("evaluated_on"), 0),
        "fid_basis": basis,
        "ssim_input": _fmt(result.get("ssim_input"), 3),
        "psnr_input": _fmt(result.get("psnr_input"), 2),
    }


def markdown_table(results: Sequence[Mapping[str, Any]]) -> str:
    """The study's table layout (dataset, β, SSIM, PSNR dB, FID) with n and what FID rests on; when a row
    corrupts its input, the input's SSIM and PSNR in two more columns."""
    columns = TABLE_COLUMNS
    if any(result.get("psnr_input") is not None for result in results):
        columns = TABLE_COLUMNS + INPUT_COLUMNS
    lines = [
        "| " + " | ".join(header for header, _ in columns) + " |",
        "|" + "|".join("---" for _ in columns) + "|",
    ]
    for result in results:
        cells = table_cells(result)
        lines.append("| " + " | ".join(cells[key].replace("|", "/") for _, key in columns) + " |")
    return "\n".join(lines)

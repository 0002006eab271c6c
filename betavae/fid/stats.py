"""FID between two sets the way pytorch-fid is called: image folders (features of every readable image) or
``.npz`` files of precomputed statistics.

An image is read as torch-fidelity and pytorch-fid read it: PIL, converted to 8-bit RGB at its own size; the
feature network (``InceptionFeatures``) resizes it to 299×299 with torch-fidelity's TensorFlow-1 bilinear
resize (``interpolate_bilinear_2d_like_tensorflow1x``, no antialiasing), the resize of the reference FID
(Heusel et al. 2017, TTUR's ``fid.py``). torchmetrics' default ``antialias=True`` would change 64-px images'
features by about 15 %, so it is not used.

A statistics file holds ``mu`` (d,) and ``sigma`` (d, d) as pytorch-fid writes them (its ``--save-stats``
files load here and ours load there), plus ``n``, ``network`` (which feature network made them; scores
between different networks are refused) and ``features`` (N, d) float32, from which KID can be computed.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import nn

from betavae.errors import ConfigError, DataError, MissingFileError


@dataclass
class FeatureSet:
    """The features of one side: ``features`` (N, d) when computed here or stored, else ``mu`` and ``sigma``."""

    path: Path
    network: str
    n: int | None  # None: a statistics file that does not say (pytorch-fid's)
    mu: np.ndarray
    sigma: np.ndarray
    features: np.ndarray | None = None
    skipped: list[str] = field(default_factory=list)
    seconds: float = 0.0
    cpu_seconds: float = 0.0
    reference: str | None = None  # what the features were computed from (``save_stats(..., reference=...)``)

    @property
    def kind(self) -> str:
        return "statistics" if self.path.suffix == ".npz" else "images"


def moments(features: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean (d,) and unbiased covariance (d, d) of features (N, d), in float64 (as pytorch-fid)."""
    features = np.asarray(features, dtype=np.float64)
    if len(features) < 2:  # no covariance from one image: NaN, and the caller's "at least 2 images" message
        return features.mean(axis=0), np.full((features.shape[1], features.shape[1]), np.nan)
    return features.mean(axis=0), np.cov(features, rowvar=False)


def frechet_distance(mu1: np.ndarray, sigma1: np.ndarray, mu2: np.ndarray, sigma2: np.ndarray) -> float:
    """‖μ₁ − μ₂‖² + tr(Σ₁ + Σ₂ − 2 (Σ₁Σ₂)^½) (Heusel et al. 2017), with tr (Σ₁Σ₂)^½ as the sum of the square
    roots of the eigenvalues of Σ₁Σ₂ (torchmetrics' formula), in float64."""
    mu1, mu2 = torch.as_tensor(mu1, dtype=torch.float64), torch.as_tensor(mu2, dtype=torch.float64)
    s1, s2 = torch.as_tensor(sigma1, dtype=torch.float64), torch.as_tensor(sigma2, dtype=torch.float64)
    root_trace = torch.linalg.eigvals(s1 @ s2).sqrt().real.sum()
    return float((mu1 - mu2).square().sum() + s1.trace() + s2.trace() - 2 * root_trace)


def read_rgb(path: Path) -> torch.Tensor:
    """One image as uint8 RGB (3, H, W), as pytorch-fid and torch-fidelity read it (PIL, ``convert("RGB")``)."""
    from PIL import Image

    with Image.open(path) as image:
        array = np.asarray(image.convert("RGB"), dtype=np.uint8)  # (H, W, 3); decodes fully: truncation raises
    return torch.from_numpy(array.copy()).permute(2, 0, 1)


def image_batches(files: list[Path], batch_size: int, skipped: list[str]):
    """Batches (B, 3, H, W) uint8 of consecutive readable images of one size; unreadable files are appended
    to ``skipped`` (as ``"path: reason"``) and left out."""
    batch: list[torch.Tensor] = []
    for path in files:
        try:
            image = read_rgb(path)
        except (OSError, ValueError, SyntaxError) as err:  # PIL: UnidentifiedImageError, truncated, bad header
            skipped.append(f"{path}: {type(err).__name__}: {err}")
            continue
        if batch and (image.shape != batch[0].shape or len(batch) == batch_size):
            yield torch.stack(batch)
            batch = []
        batch.append(image)
    if batch:
        yield torch.stack(batch)


@torch.no_grad()
def folder_features(
    folder: str | Path,
    extractor: nn.Module,
    network: str,
    batch_size: int = 50,
    device: str | torch.device = "cpu",
    max_images: int | None = None,
) -> FeatureSet:
    """The features of every readable image under ``folder`` (recursively, sorted; the first ``max_images``).

    Raises:
        MissingFileError: ``folder`` does not exist or holds no image file (the message shows the layout).
        DataError: none of its images can be read.
    """
    from betavae.data import find_images

    folder = Path(folder).expanduser()
    files = find_images(folder)[:max_images]
    skipped: list[str] = []
    chunks = []
    extractor = extractor.to(device)
    start, cpu_start = time.perf_counter(), time.process_time()
    for batch in image_batches(files, batch_size, skipped):
        chunks.append(extractor(batch.to(device).float().div(255)).double().cpu())  # (B, d)
    seconds, cpu_seconds = time.perf_counter() - start, time.process_time() - cpu_start
    if not chunks:
        raise DataError(f"none of the {len(files)} image files under {folder} can be read; first: {skipped[0]}")
    features = torch.cat(chunks).numpy()
    mu, sigma = moments(features)
    return FeatureSet(
        folder, network, len(features), mu, sigma, features.astype(np.float32), skipped, seconds, cpu_seconds
    )


def load_stats(path: str | Path) -> FeatureSet:
    """A statistics file (``mu``, ``sigma``; optional ``n``, ``network``, ``features``).

    Raises:
        MissingFileError: it does not exist.
        DataError: it is not an ``.npz`` with ``mu`` (d,) and ``sigma`` (d, d).
    """
    path = Path(path).expanduser()
    if not path.is_file():
        raise MissingFileError(
            f"statistics file {path} does not exist (write one with `fid --save-stats IMAGES {path}`)"
        )
    try:
        with np.load(path, allow_pickle=False) as data:
            stored = {key: data[key] for key in data.files}
    except (OSError, ValueError) as err:
        raise DataError(f"{path} is not a readable .npz of FID statistics: {type(err).__name__}: {err}") from err
    mu, sigma = stored.get("mu"), stored.get("sigma")
    if mu is None or sigma is None or mu.ndim != 1 or sigma.shape != (len(mu), len(mu)):
        raise DataError(f"{path} needs arrays mu (d,) and sigma (d, d), as pytorch-fid writes; it has {sorted(stored)}")
    network = str(stored["network"]) if "network" in stored else "unknown (no 'network' entry; pytorch-fid's file?)"
    features = stored.get("features")
    n = int(stored["n"]) if "n" in stored else (len(features) if features is not None else None)
    reference = str(stored["reference"]) if "reference" in stored else None
    return FeatureSet(path, network, n, mu.astype(np.float64), sigma.astype(np.float64), features, reference=reference)


def save_stats(features: FeatureSet, path: str | Path, **notes: str) -> Path:
    """Write ``mu``, ``sigma`` (pytorch-fid's keys), ``n``, ``network``, ``features`` (float32) and any ``notes``
    (strings, e.g. ``reference``: what the features were computed from) to ``path``."""
    path = Path(path).expanduser()
    if path.suffix != ".npz":
        raise ConfigError(f"statistics are written to a .npz file; got {path}")
    path.parent.mkdir(parents=True, exist_ok=True)
    arrays = {
        "mu": features.mu,
        "sigma": features.sigma,
        "n": np.int64(features.n),
        "network": np.str_(features.network),
    }
    if features.features is not None:
        arrays["features"] = features.features
    arrays.update({key: np.str_(value) for key, value in notes.items()})
    # written beside the target and renamed into place: a reader (e.g. a second study worker waiting for the
    # same FID reference cache) sees no file or the whole file, never half of one
    partial = path.with_name(f".{path.name}.{os.getpid()}.partial.npz")
    try:
        np.savez(partial, **arrays)
        os.replace(partial, path)
    finally:
        partial.unlink(missing_ok=True)
    return path

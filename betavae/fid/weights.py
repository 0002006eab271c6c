"""The InceptionV3 weights file FID needs: where it is looked for, downloading it, and what to do without it.

torch-fidelity's InceptionV3 (the standard FID network) is looked for before training starts (see
``find_inception_weights``), so a node without internet fails at setup, not after hours of training.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
import urllib.request
from pathlib import Path

import torch
from lightning.pytorch.utilities import rank_zero_info
from torch_fidelity.feature_extractor_inceptionv3 import URL_INCEPTION_V3

from betavae.errors import BetaVAEError

INCEPTION_URL = URL_INCEPTION_V3
INCEPTION_FILE = INCEPTION_URL.rsplit("/", 1)[1]  # weights-inception-2015-12-05-6726825d.pth
INCEPTION_SHA256_PREFIX = INCEPTION_FILE.rsplit("-", 1)[1].split(".")[0]  # 6726825d
WEIGHTS_ENV = "BETAVAE_INCEPTION_WEIGHTS"


class InceptionWeightsError(BetaVAEError, FileNotFoundError):
    """The InceptionV3 weights file is missing and could not be downloaded; the message says what to do."""


def cached_weights_path() -> Path:
    """Where torch-fidelity (and ``prefetch``) keep the weights: the torch hub cache,
    ``$TORCH_HOME/hub/checkpoints/`` (by default ``~/.cache/torch/hub/checkpoints/``)."""
    return Path(torch.hub.get_dir()) / "checkpoints" / INCEPTION_FILE


def download_inception_weights(path: str | Path | None = None, timeout: float = 60.0) -> Path:
    """Download torch-fidelity's InceptionV3 weights to ``path`` (default: ``cached_weights_path()``).

    The file's SHA-256 must start with the prefix in its name; it is written to a temporary file first,
    so an interrupted download never leaves a truncated weights file behind.

    Raises:
        OSError: the download failed (no network, timeout, bad checksum).
    """
    path = Path(path).expanduser() if path is not None else cached_weights_path()
    path.parent.mkdir(parents=True, exist_ok=True)
    digest = hashlib.sha256()
    with tempfile.NamedTemporaryFile(dir=path.parent, suffix=".partial", delete=False) as tmp:
        try:
            with urllib.request.urlopen(INCEPTION_URL, timeout=timeout) as response:  # noqa: S310 (fixed https URL)
                while chunk := response.read(1 << 20):
                    digest.update(chunk)
                    tmp.write(chunk)
        except BaseException:
            Path(tmp.name).unlink(missing_ok=True)
            raise
    if not digest.hexdigest().startswith(INCEPTION_SHA256_PREFIX):
        Path(tmp.name).unlink(missing_ok=True)
        raise OSError(
            f"downloaded {INCEPTION_URL} has SHA-256 {digest.hexdigest()}, expected {INCEPTION_SHA256_PREFIX}…"
        )
    os.replace(tmp.name, path)
    return path


def missing_weights_message(looked_at: list[Path], reason: str | None = None) -> str:
    """What to do when the weights file is missing: which file, where to put it, how to fetch it."""
    cache = cached_weights_path()
    return "\n".join(
        [
            f"FID needs torch-fidelity's InceptionV3 weights, the file {INCEPTION_FILE}; "
            f"looked at: {', '.join(map(str, looked_at))}." + (f" Downloading it failed: {reason}." if reason else ""),
            "Fix it in one of these ways:",
            "  - on a machine with internet run `python -m betavae prefetch` (it downloads the file into that "
            f"machine's torch hub cache, ~/.cache/torch/hub/checkpoints/; or fetch {INCEPTION_URL}), then copy the "
            f"file to {cache} on this machine;",
            f"  - or put the file anywhere and set {WEIGHTS_ENV}=/path/to/{INCEPTION_FILE}, or pass "
            "--fid.weights_path /path/to/the/file;",
            "  - or go on without FID: --fid.on_missing warn (or fid: {on_missing: warn} in the config) turns FID "
            "off with one warning.",
        ]
    )


def find_inception_weights(weights_path: str | Path | None = None, download: bool = True) -> Path:
    """The InceptionV3 weights file: ``weights_path``, else ``$BETAVAE_INCEPTION_WEIGHTS``, else the
    torch hub cache (``cached_weights_path()``), downloaded there when missing and ``download`` is set.

    A path given explicitly (argument or environment variable) must exist: nothing is downloaded to it.

    Raises:
        InceptionWeightsError: not found (and not downloaded); the message says which file to put
            where and how to fetch it.
    """
    explicit = weights_path or os.environ.get(WEIGHTS_ENV) or None
    if explicit:
        path = Path(explicit).expanduser()
        if path.is_file():
            return path
        source = "weights_path" if weights_path else WEIGHTS_ENV
        raise InceptionWeightsError(missing_weights_message([path], f"not tried ({source} names a missing file)"))
    path = cached_weights_path()
    if path.is_file():
        return path
    reason = "not tried (download disabled)"
    if download:
        try:
            rank_zero_info(f"Downloading the InceptionV3 weights for FID to {path}")
            return download_inception_weights(path)
        except OSError as err:
            reason = f"{type(err).__name__}: {err}"
    raise InceptionWeightsError(missing_weights_message([path], reason))


def prefetch(path: str | None = None, timeout: float = 120.0) -> Path:
    """Download the InceptionV3 weights FID needs (torch-fidelity's), on a machine with internet.

    Args:
        path: Where to write the file; default: the torch hub cache, where FID looks for it.
        timeout: Seconds to wait for the server.
    """
    target = Path(path).expanduser() if path else cached_weights_path()
    if target.is_file() and hashlib.sha256(target.read_bytes()).hexdigest().startswith(INCEPTION_SHA256_PREFIX):
        print(f"{target} is already there (checksum OK).")
    else:
        print(f"Downloading {INCEPTION_URL}\n  to {target} ...")
        download_inception_weights(target, timeout)
        print(f"Done (checksum OK): {target}")
    print(
        f"For a machine without internet, copy the file into its torch hub cache, ~/.cache/torch/hub/checkpoints/ "
        f"(or $TORCH_HOME/hub/checkpoints/), or anywhere and set {WEIGHTS_ENV} to its path (or --fid.weights_path)."
    )
    return target

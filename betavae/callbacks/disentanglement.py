"""Disentanglement metrics of the model being trained: ``val/mig``, ``val/sap``, ``val/dci_*``, ... every N epochs.

The metrics are those of ``betavae.disentanglement`` (the protocols of disentanglement_lib, Locatello et
al. 2019); this module decides what they run on, for any data module (``betavae.data.ground_truth``):

- **factors** (shapes, dSprites, 3D Shapes): ``evaluate_representation`` on the factor grid, images drawn
  uniformly and rendered on demand, the codes μ of ``model_representation``: every metric, the BetaVAE and
  FactorVAE scores included;
- **attributes or labels** (CelebA's 40 attributes, class labels): ``evaluate_codes`` on the codes of the
  validation images and their observed ground truth (``betavae.callbacks.codes``): the sample-based
  metrics only, since nothing can render an image with one attribute changed. A class label counts as
  one 0/1 attribute per class.

A conditional model (``betavae.model_api.needs_label``) encodes with its class label, which grid images
drawn from the factors do not carry: it is scored like attribute data, on the validation images with
their labels.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
from lightning.pytorch.callbacks import Callback
from lightning.pytorch.utilities import rank_zero_info, rank_zero_warn

from betavae.callbacks._common import due
from betavae.callbacks.codes import ValidationCodes, batch_codes, ground_truth_columns, ground_truth_of
from betavae.disentanglement import (
    Preset,
    evaluate_codes,
    evaluate_representation,
    model_representation,
    sample_codes,
)
from betavae.errors import ConfigError
from betavae.model_api import api_problem, evaluating, needs_label
from betavae.runs import datamodule_label, trainer_run_dir


def scored_on_grid(model: Any, datamodule: Any) -> bool:
    """Whether ``model`` is scored on ``datamodule``'s factor grid (else on observed validation codes)."""
    kind, _ = ground_truth_of(datamodule)
    return kind == "factors" and not needs_label(model)


def preset_sizes(preset: str | Preset) -> dict[str, Any]:
    """A preset's name and sample sizes, for records: ``{"name": "fast", "num_train": 2000, ...}``."""
    p = Preset.named(preset)
    return {"name": preset if isinstance(preset, str) else "custom", **vars(p)}


def grid_scores(
    model: Any, datamodule: Any, preset: str | Preset, seed: int, interventions: bool = True, n_jobs: int | None = None
) -> dict[str, Any]:
    """Every metric of ``model``'s μ on the factor grid of ``datamodule`` (a ``GroundTruthData``).

    With ``interventions`` ``evaluate_representation`` (all nine keys); without, only its sample-based part
    (the same draws and the same numbers for those seven keys, without the BetaVAE and FactorVAE scores).

    Returns:
        ``{"scores": {key: value}, "basis": ..., "n": images of the sample-based metrics, "dropped": []}``.
    """
    p = Preset.named(preset)
    with evaluating(model):
        represent = model_representation(model)
        if interventions:
            scores = evaluate_representation(datamodule, represent, p, seed, n_jobs=n_jobs)
        else:
            codes, factors = sample_codes(datamodule, represent, p.num_train + p.num_test, np.random.default_rng(seed))
            scores = evaluate_codes(codes, factors, p, seed, n_jobs)
    sizes = "×".join(str(s) for s in datamodule.factor_sizes)
    basis = f"{datamodule_label(datamodule)} factor grid ({sizes}), uniform draws"
    return {"scores": scores, "basis": basis, "n": p.num_train + p.num_test, "dropped": []}


def observed_scores(
    codes: np.ndarray,
    factors: np.ndarray,
    names: tuple[str, ...],
    datamodule: Any,
    preset: str | Preset,
    seed: int,
    n_jobs: int | None = None,
) -> dict[str, Any]:
    """The sample-based metrics of validation codes (N, D) against their observed ground truth (N, K).

    Class labels become one 0/1 column per class and constant columns are dropped
    (``ground_truth_columns``); ``evaluate_codes`` needs at least two columns left.

    Raises:
        ValueError: fewer than two usable columns, or what ``evaluate_codes`` refuses (names the problem).
    """
    kind, classes = ground_truth_of(datamodule)
    columns, kept, dropped = ground_truth_columns(factors, names, kind, classes)
    if columns.shape[1] < 2:
        raise ValueError(
            f"{len(codes)} validation images leave {columns.shape[1]} ground-truth column(s) with more than one "
            f"value ({', '.join(kept) or 'none'}); the metrics compare at least 2 (more validation images?)"
        )
    scores = evaluate_codes(codes, columns, preset, seed, n_jobs)
    what = {"attributes": "attributes", "labels": "classes (one 0/1 column each)", "factors": "factors"}[kind]
    basis = f"{datamodule_label(datamodule)} validation split, {len(kept)} {what}"
    return {"scores": scores, "basis": basis, "n": len(codes), "dropped": list(dropped)}


class DisentanglementMetrics(Callback):
    """Disentanglement metrics of the model's codes every ``every_n_epochs`` validation epochs.

    On factor data (shapes, dSprites, 3D Shapes) the model's μ is scored on the factor grid by
    ``evaluate_representation``: ``val/mig``, ``val/sap``, ``val/dci_disentanglement``,
    ``val/dci_completeness``, ``val/dci_informativeness``, ``val/modularity``, ``val/explicitness``,
    ``val/factorvae_score`` and ``val/betavae_score``. On data with attributes or class labels (CelebA,
    (Fashion-)MNIST, Stanford Cars) the first seven are computed from the codes of the validation images
    (at most the preset's ``num_train + num_test``) against their attributes (a class is a 0/1 attribute).
    Data without ground truth: one message, no metrics.

    Under DDP the validation codes are gathered from every process (the same images as one process would
    see), the metrics are computed on rank zero and broadcast, so every rank logs the same numbers, to
    every logger. Each result is also appended, with the preset's sample sizes, the seed, what it was
    computed on and its time, to ``disentanglement.jsonl`` in the run directory. Models without ``embed``
    and ``normalize`` get one warning and no metrics; a failure of the metrics (e.g. too few validation
    images for an attribute) is one warning, and training goes on.

    Cost: the fast preset on the quickstart model (64×64 shapes) renders and encodes ~245,000 images
    (the BetaVAE and FactorVAE scores draw all but 3,000 of them, ~2.2 ms of CPU each): 568 s of CPU
    time on 2 cores, as long as the quickstart's whole training; the sample-based metrics alone
    (``interventions: false``) about 40 s. Hence off by default; on a GPU the images take seconds and
    DCI's trees (CPU, ~20 s at the fast preset) dominate.

    Args:
        every_n_epochs: Period in validation epochs (also after the last epoch, and every ``validate``);
            ``None``: never (``evaluate`` still computes them, with ``--disentanglement_preset``).
        preset: Sample sizes: ``"fast"`` (for training), ``"default"`` (disentanglement_lib's), or a
            ``betavae.disentanglement.Preset``. Compare runs under one preset only.
        seed: Seed of every draw, split and estimator (the same seed gives the same numbers).
        interventions: On factor data, also the BetaVAE and FactorVAE scores (they render most images).
        n_jobs: DCI's factors fitted in parallel (joblib; -1: every core); the scores do not depend on it.
    """

    def __init__(
        self,
        every_n_epochs: int | None = None,
        preset: str | Preset = "fast",
        seed: int = 0,
        interventions: bool = True,
        n_jobs: int | None = None,
    ) -> None:
        if every_n_epochs is not None and every_n_epochs < 1:
            raise ConfigError(f"every_n_epochs must be >= 1 or None (never), got {every_n_epochs}")
        p = Preset.named(preset)  # checks the name
        self.every_n_epochs = every_n_epochs
        self.preset = preset
        self.seed = seed
        self.interventions = interventions
        self.n_jobs = n_jobs
        self.codes = ValidationCodes(max_images=p.num_train + p.num_test)
        self.disabled: str | None = None
        self.on_grid = False
        self.last: dict[str, Any] | None = None  # the last record written
        self._run_dir: Path | None = None

    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        self._run_dir = trainer_run_dir(trainer)  # on every rank: trainer.log_dir is a collective under DDP
        if self.every_n_epochs is None:
            return
        kind, _ = ground_truth_of(trainer.datamodule)
        problem = api_problem(pl_module, embed=1, normalize=1)
        if kind is None:
            problem = f"{type(trainer.datamodule).__name__} has no ground truth (factors, attributes or class labels)"
        if problem and problem != self.disabled:
            rank_zero_warn(f"DisentanglementMetrics: {problem}; no disentanglement metrics this run.")
        self.disabled = problem
        self.on_grid = scored_on_grid(pl_module, trainer.datamodule)
        if kind == "factors" and not self.on_grid:
            rank_zero_info(
                f"DisentanglementMetrics: {type(pl_module).__name__} encodes with class labels, which images "
                "drawn from the factor grid lack: scored on the validation images instead (no BetaVAE or "
                "FactorVAE score)."
            )

    def _active(self, trainer: L.Trainer) -> bool:
        return (
            self.every_n_epochs is not None
            and not self.disabled
            and not trainer.sanity_checking
            and due(trainer, self.every_n_epochs)
        )

    def on_validation_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self._active(trainer) and not self.on_grid:
            self.codes.reset(trainer)

    def on_validation_batch_end(
        self,
        trainer: L.Trainer,
        pl_module: L.LightningModule,
        outputs: Any,
        batch: Any,
        batch_idx: int,
        dataloader_idx: int = 0,
    ) -> None:
        if dataloader_idx != 0 or self.on_grid or not self._active(trainer) or self.codes.full:
            return
        with evaluating(pl_module):
            self.codes.add(batch_codes(pl_module, batch), batch, trainer.datamodule)

    def _compute(self, trainer: L.Trainer, pl_module: L.LightningModule, observed: Any) -> dict[str, Any]:
        """On rank zero: the record, or ``{"error": message}`` for a failure every rank reports."""
        start = time.perf_counter()
        try:
            if self.on_grid:
                result = grid_scores(
                    pl_module, trainer.datamodule, self.preset, self.seed, self.interventions, self.n_jobs
                )
            elif observed is None:
                return {"error": "no validation images were seen"}
            else:
                codes, factors = observed
                result = observed_scores(
                    codes, factors, self.codes.names, trainer.datamodule, self.preset, self.seed, self.n_jobs
                )
        except ValueError as err:  # the metrics' own checks: one warning, training goes on
            return {"error": str(err)}
        except Exception as err:  # anything else stops every rank, not only this one
            return {"error": f"{type(err).__name__}: {err}", "fatal": True}
        return {
            "epoch": trainer.current_epoch,
            "step": trainer.global_step,
            **result,
            "preset": preset_sizes(self.preset),
            "seed": self.seed,
            "seconds": round(time.perf_counter() - start, 2),
        }

    def on_validation_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if not self._active(trainer):
            return
        observed = None if self.on_grid else self.codes.gather(trainer)  # a collective: every rank
        record = self._compute(trainer, pl_module, observed) if trainer.is_global_zero else None
        record = trainer.strategy.broadcast(record, src=0)  # rank zero's numbers, on every rank
        if record.get("fatal"):
            raise RuntimeError(f"DisentanglementMetrics failed on rank zero: {record['error']}")
        if "error" in record:
            rank_zero_warn(f"DisentanglementMetrics: no metrics at epoch {trainer.current_epoch}: {record['error']}")
            return
        for key, value in record["scores"].items():
            # the same number on every rank; sync_dist keeps Lightning's distributed-logging check quiet
            pl_module.log(f"val/{key}", float(value), on_epoch=True, sync_dist=True)
        self.last = record
        if trainer.is_global_zero:
            path = (self._run_dir or trainer_run_dir(trainer)) / "disentanglement.jsonl"
            path.parent.mkdir(parents=True, exist_ok=True)
            with path.open("a") as f:
                f.write(json.dumps(record) + "\n")

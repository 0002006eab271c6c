"""Disentanglement metrics of the model being trained: ``val/mig``, ``val/sap``, ``val/dci_*``, ... every N epochs.

The hook over ``betavae.scoring.disentanglement`` (what the metrics run on, for any data module): when to
score, where to log and write.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import lightning as L
from lightning.pytorch.callbacks import Callback
from lightning.pytorch.utilities import rank_zero_info, rank_zero_warn

from betavae.callbacks._common import due
from betavae.disentanglement import DCIEstimator, Preset
from betavae.disentanglement.classifiers import check_dci_estimator
from betavae.errors import ConfigError
from betavae.model_api import api_problem, evaluating
from betavae.run_folders import trainer_run_dir
from betavae.scoring.codes import ValidationCodes, batch_codes, ground_truth_of
from betavae.scoring.disentanglement import (
    DisentanglementSettings,
    grid_scores,
    observed_scores,
    preset_sizes,
    scored_on_grid,
)


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
    every logger. Each result is also appended, with the preset's sample sizes, the seed, DCI's estimator,
    what it was computed on and its time, to ``disentanglement.jsonl`` in the run directory. Models without ``embed``
    and ``normalize`` get one warning and no metrics; a failure of the metrics (e.g. too few validation
    images for an attribute) is one warning, and training goes on.

    Cost: the fast preset on the quickstart model (64×64 shapes) draws ~245,000 images, 208,345 of them
    distinct, each rendered and encoded once (the BetaVAE and FactorVAE scores draw all but 3,000 of them,
    ~2.2 ms of CPU each; docs/scoring_speed.md): before that cache, 568 s of CPU
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
        n_jobs: DCI's factors fitted in parallel processes (``None``: one per core; 1: one at a time); the
            scores do not depend on it.
        dci_estimator: DCI's classifier: ``gbt`` (disentanglement_lib's gradient-boosted trees, the default) or
            ``random_forest`` (Eastwood & Williams 2018's estimator; 20-30x less CPU, other numbers: compare runs
            under one estimator only; ``betavae.disentanglement.dci_classifier``). ``evaluate`` has its own
            ``--dci_estimator``.
    """

    def __init__(
        self,
        every_n_epochs: int | None = None,
        preset: str | Preset = "fast",
        seed: int = 0,
        interventions: bool = True,
        n_jobs: int | None = None,
        dci_estimator: DCIEstimator = "gbt",
    ) -> None:
        if every_n_epochs is not None and every_n_epochs < 1:
            raise ConfigError(f"every_n_epochs must be >= 1 or None (never), got {every_n_epochs}")
        p = Preset.named(preset)  # checks the name
        try:
            check_dci_estimator(dci_estimator)
        except ValueError as err:
            raise ConfigError(f"DisentanglementMetrics: {err}") from None
        self.every_n_epochs = every_n_epochs
        self.preset = preset
        self.seed = seed
        self.interventions = interventions
        self.n_jobs = n_jobs
        self.dci_estimator = dci_estimator
        self.codes = ValidationCodes(max_images=p.num_train + p.num_test)
        self.disabled: str | None = None
        self.on_grid = False
        self.last: dict[str, Any] | None = None  # the last record written
        self._run_dir: Path | None = None

    @property
    def settings(self) -> DisentanglementSettings:
        """This callback's preset, seed, interventions, n_jobs and DCI estimator (``evaluate`` reuses the seed,
        interventions and n_jobs; its preset and estimator are its own arguments)."""
        return DisentanglementSettings(self.preset, self.seed, self.interventions, self.n_jobs, self.dci_estimator)

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
                    pl_module,
                    trainer.datamodule,
                    self.preset,
                    self.seed,
                    self.interventions,
                    self.n_jobs,
                    dci_estimator=self.dci_estimator,
                )
            elif observed is None:
                return {"error": "no validation images were seen"}
            else:
                codes, factors = observed
                result = observed_scores(
                    codes,
                    factors,
                    self.codes.names,
                    trainer.datamodule,
                    self.preset,
                    self.seed,
                    self.n_jobs,
                    self.dci_estimator,
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
            "dci_estimator": self.dci_estimator,
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

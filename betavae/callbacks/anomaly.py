"""Anomaly scores: each predicted image's reconstruction error, flagged against a validation threshold."""

from __future__ import annotations

import csv
import json
from collections.abc import Sequence
from typing import Any

import lightning as L
import numpy as np
import torch
from lightning.pytorch.callbacks import BasePredictionWriter
from lightning.pytorch.utilities import rank_zero_info

from betavae.errors import ConfigError
from betavae.run_folders import trainer_run_dir


class AnomalyScores(BasePredictionWriter):
    """Writes ``anomaly_scores.csv`` during ``predict``: per image its ``index`` (and ``label``), its
    reconstruction error ``mse`` (mean squared error in pixel space [0, 1], from ``predict_step``) and
    ``anomaly`` (1 when the error exceeds the threshold). The threshold is the ``percentile`` of the
    same error over the data module's validation split (images the model is assumed to reconstruct
    normally), or a fixed ``threshold``. ``anomaly_threshold.json`` records how it was chosen.

    Args:
        percentile: Percentile of the validation errors used as the threshold (e.g. 99).
        threshold: A fixed threshold instead (e.g. from an earlier run); skips the validation pass.
        filename: Name of the CSV file in the run directory.
    """

    def __init__(self, percentile: float = 99.0, threshold: float | None = None, filename: str = "anomaly_scores.csv"):
        super().__init__(write_interval="epoch")
        if not 0 < percentile <= 100:
            raise ConfigError(f"percentile must be in (0, 100], got {percentile}")
        self.percentile = percentile
        self.threshold = threshold
        self.filename = filename

    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        trainer_run_dir(trainer)  # on every rank: trainer.log_dir is a collective under DDP

    def validation_errors(self, trainer: L.Trainer, pl_module: L.LightningModule) -> np.ndarray:
        """``predict_step``'s error over every image of the validation split."""
        errors = []
        with torch.no_grad():
            for i, batch in enumerate(trainer.datamodule.eval_batches("val", device=pl_module.device)):
                errors.append(pl_module.predict_step(batch, i)["mse"].float().cpu())
        return torch.cat(errors).numpy()

    def write_on_epoch_end(
        self, trainer: L.Trainer, pl_module: L.LightningModule, predictions: Sequence[Any], batch_indices: Any
    ) -> None:
        if not trainer.is_global_zero:
            return
        info: dict[str, Any] = {"percentile": None, "threshold": self.threshold}
        if self.threshold is None:
            val = self.validation_errors(trainer, pl_module)
            info = {
                "percentile": self.percentile,
                "threshold": float(np.percentile(val, self.percentile)),
                "validation_images": len(val),
                "validation_mean_mse": float(val.mean()),
            }
        threshold = info["threshold"]
        batches = predictions[0] if predictions and isinstance(predictions[0], list) else predictions
        rows = []
        for out in batches:
            n = len(out["mse"])
            index = out.get("index", torch.full((n,), -1))
            label = out.get("label")
            for i in range(n):
                mse = float(out["mse"][i])
                row = {"index": int(index[i]), "mse": f"{mse:.6g}", "anomaly": int(mse > threshold)}
                if label is not None:
                    row["label"] = int(label[i])
                rows.append(row)
        folder = trainer_run_dir(trainer)
        folder.mkdir(parents=True, exist_ok=True)
        with open(folder / self.filename, "w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=list(rows[0]) if rows else ["index", "mse", "anomaly"])
            writer.writeheader()
            writer.writerows(rows)
        info.update(scored_images=len(rows), anomalies=sum(r["anomaly"] for r in rows))
        (folder / "anomaly_threshold.json").write_text(json.dumps(info, indent=2))
        rank_zero_info(
            f"AnomalyScores: {info['anomalies']} of {len(rows)} images above the threshold {threshold:.6g}; "
            f"wrote {folder / self.filename}"
        )

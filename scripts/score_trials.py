"""Quick scores of training runs on the generated shapes, for tuning the CPU study's configs (configs/study_cpu/).

For each run folder (``.../version_N``, with ``checkpoints/last.ckpt``, ``config.yaml`` and ``metrics.csv``) one
JSON line: the last validation's ``val/psnr`` and ``val/ssim`` (``metrics.csv``; images in [0, 1], data range 1),
the active latent dimensions (mean KL(q(z_i|x) || N(0, 1)) >= ``--active_kl`` nats over the first 2,048
validation images), and MIG with its per-factor gaps on 10,000 codes (μ) of images drawn uniformly from the
whole factor grid, 20-bin histograms: disentanglement_lib's MIG protocol (Chen et al. 2018; Locatello et al.
2019), at a few seconds of CPU instead of the minutes of ``evaluate``'s full suite (its other metrics are not
computed here; compare with ``python -m betavae evaluate --disentanglement_preset fast`` for those).

    python scripts/score_trials.py runs/trials/*/version_0 [--jsonl scores.jsonl]
"""

from __future__ import annotations

import argparse
import csv
import json
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
import yaml

from betavae.cli import BetaVAECLI
from betavae.data import ShapesDataModule
from betavae.data.shapes import FACTOR_NAMES
from betavae.disentanglement import model_representation, sample_codes
from betavae.disentanglement.arrays import factor_entropy, histogram_discretize, mutual_information
from betavae.loaded_checkpoint import read_checkpoint


def load_model(run: Path) -> torch.nn.Module:
    """The run's model as the CLI builds it from the run's ``config.yaml`` (its argument links, old arguments
    upgraded by ``betavae.models.legacy``), with the weights of ``checkpoints/last.ckpt``."""
    config = yaml.safe_load((run / "config.yaml").read_text())
    for key in ("ckpt_path", "weights_only"):  # the fit subcommand's own keys
        config.pop(key, None)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "config.yaml"
        path.write_text(yaml.safe_dump(config))
        model = BetaVAECLI(args=["--config", str(path), "--trainer.logger=false"], run=False).model
    model.load_state_dict(read_checkpoint(run / "checkpoints" / "last.ckpt").contents["state_dict"])
    return model.eval()


def kl_per_dim(model: torch.nn.Module, data: ShapesDataModule, max_images: int = 2048) -> np.ndarray:
    """Mean KL(q(z_i|x) || N(0, 1)) per dimension over the first ``max_images`` validation images, (D,)."""
    data.setup("fit")
    total, n = 0.0, 0
    with torch.no_grad():
        for batch in data.val_dataloader():
            x = model.normalize(batch["image"].float() / 255.0)  # (B, C, H, W)
            posterior = model.encode(x)
            mu, logvar = posterior.mean, posterior.logvar  # (B, D)
            total = total + (0.5 * (mu**2 + logvar.exp() - 1 - logvar)).sum(0)
            n += len(x)
            if n >= max_images:
                break
    return (total / n).numpy()


def score(run: Path, active_kl: float, num_codes: int, seed: int) -> dict:
    start = time.process_time()
    model = load_model(run)
    data = ShapesDataModule(image_size=model.image_size, channels=1)
    codes, factors = sample_codes(data, model_representation(model), num_codes, np.random.default_rng(seed))
    mi = mutual_information(histogram_discretize(codes, 20), factors)  # (D, K)
    top_two = -np.sort(-mi, axis=0)[:2]  # (2, K)
    gaps = (top_two[0] - top_two[1]) / factor_entropy(factors)  # (K,)
    kl = kl_per_dim(model, data)
    rows = [r for r in csv.DictReader((run / "metrics.csv").open()) if r.get("val/psnr")]
    last = rows[-1] if rows else {}
    return {
        "run": run.parent.name,
        "val_step": int(last["step"]) if last else None,
        "psnr": round(float(last["val/psnr"]), 2) if last else None,
        "ssim": round(float(last["val/ssim"]), 3) if last.get("val/ssim") else None,
        "active": int((kl >= active_kl).sum()),
        "mig": round(float(gaps.mean()), 3),
        "gaps": {name: round(float(g), 2) for name, g in zip(FACTOR_NAMES, gaps, strict=True)},
        "kl": [round(float(v), 2) for v in sorted(kl, reverse=True)],
        "cpu_s": round(time.process_time() - start, 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", nargs="+", type=Path, help="Run folders (version_N).")
    parser.add_argument("--jsonl", type=Path, default=None, help="Also append each line to this file.")
    parser.add_argument("--active_kl", type=float, default=0.1, help="KL (nats) from which a dimension is active.")
    parser.add_argument("--num_codes", type=int, default=10_000, help="Codes for MIG (the protocol: 10,000).")
    parser.add_argument("--seed", type=int, default=1234, help="Seed of the factor draws.")
    args = parser.parse_args()
    for run in args.runs:
        line = json.dumps(score(run, args.active_kl, args.num_codes, args.seed))
        print(line, flush=True)
        if args.jsonl is not None:
            with args.jsonl.open("a") as fh:
                fh.write(line + "\n")


if __name__ == "__main__":
    main()

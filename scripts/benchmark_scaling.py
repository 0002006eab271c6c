"""Throughput across processes and precisions: images/s of the study's β-VAE through ``betavae fit``.

Runs, each a real ``python -m betavae fit`` of the study's β-VAE (64x64x3, latent 128, batch 64 per
process) on procedural shapes, timed after ``--warmup`` batches by a callback on every process:

- ``1 process, fp32``: the baseline;
- ``N processes, fp32`` (DDP; gloo on CPU, NCCL on GPUs): scaling efficiency = images/s / (N x baseline);
- ``1 process, bf16-mixed`` (``--trainer.precision bf16-mixed``), ``1 process, channels_last``
  (``--channels-last``: ``--model.init_args.channels_last true``) and ``1 process, compile``
  (``--model.init_args.compile true``): their speed-up over the baseline.

Every run validates after its epoch; the 1-process runs start from the same seed and see the same
batches, so their ``val/loss``, ``val/psnr`` and ``val/ssim`` show what the switch does to training.
Then the baseline's checkpoint is validated in fp32, in bf16-mixed and compiled (inference numerics
alone; the PSNR/SSIM callbacks run outside autocast, so only ``val/loss`` sees bf16 there). A switch
must not move a score by more than ``--tolerance`` (relative, default 2 %); exit status 1 otherwise.

    python scripts/benchmark_scaling.py                       # CPU: 1 vs 2 processes, ~10 minutes on 2 cores
    python scripts/benchmark_scaling.py --accelerator gpu --devices 1 2 4 --num-images 40000

On a CPU the processes share the same cores, so the efficiency measures DDP's overhead, not a speed-up.
"""

from __future__ import annotations

import argparse  # a benchmark script, not a betavae command: plain argparse is enough here
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch
from benchmark_train import EpochTimer

SCRIPTS = Path(__file__).resolve().parent


class StepTimer(EpochTimer):
    """``EpochTimer`` that stops the clock at the end of the last training batch (validation excluded) and
    writes images and seconds of this process as JSON to ``<output>.rank<R>.json`` when training ends.

    Args:
        output: Path prefix of the JSON files.
        warmup: Untimed batches at the start of the epoch (compilation, allocator warm-up).
    """

    def __init__(self, output: str, warmup: int = 3) -> None:
        super().__init__(warmup)
        self.output = output
        self.end: float | None = None

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        if self.start is not None:
            self._sync(pl_module.device)
            self.end = time.perf_counter()

    def on_train_epoch_end(self, trainer, pl_module):  # the epoch's end comes after validation: not used
        pass

    def on_train_end(self, trainer, pl_module):
        if self.start is None or self.end is None:
            raise RuntimeError(f"the epoch had no more than {self.warmup} batches: nothing was timed")
        record = {
            "images": self.images,
            "seconds": self.end - self.start,
            "rank": trainer.global_rank,
            "world_size": trainer.world_size,
            "threads": torch.get_num_threads(),
        }
        Path(f"{self.output}.rank{trainer.global_rank}.json").write_text(json.dumps(record))


def val_scores(folder: Path) -> dict[str, float]:
    """The last validation row of the newest ``metrics.csv`` under ``folder``."""
    metrics = sorted(folder.glob("version_*/metrics.csv"))[-1]
    lines = metrics.read_text().splitlines()
    header = lines[0].split(",")
    rows = [dict(zip(header, line.split(","), strict=True)) for line in lines[1:]]
    last = [r for r in rows if r.get("val/psnr")][-1]
    return {k: float(v) for k, v in last.items() if k.startswith("val/") and v}


def base_args(num_images: int, accelerator: str, workdir: Path, name: str) -> list[str]:
    return [
        "--model=betavae.models.BetaVAE",
        "--model.init_args.beta=10",
        "--data=betavae.data.ShapesDataModule",
        "--data.init_args.channels=3",
        "--data.init_args.image_size=64",
        f"--data.init_args.num_images={num_images}",
        "--data.init_args.batch_size=64",
        f"--trainer.accelerator={accelerator}",
        "--trainer.logger=lightning.pytorch.loggers.CSVLogger",
        f"--trainer.logger.save_dir={workdir}",
        f"--trainer.logger.name={name}",
        f"--trainer.default_root_dir={workdir}",
        "--trainer.enable_model_summary=false",
        "--progress_bar.refresh_rate=0",
        "--traversal.every_n_epochs=1000",
        "--grids.every_n_epochs=1000",
        "--seed_everything=0",
    ]


def betavae(args: list[str], cwd: Path) -> str:
    """``python -m betavae ARGS`` (this script's folder on PYTHONPATH for ``StepTimer``); its output."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(SCRIPTS), os.environ.get("PYTHONPATH", "")])}
    env.setdefault("WANDB_MODE", "offline")
    proc = subprocess.run(
        [sys.executable, "-m", "betavae", *args], cwd=cwd, env=env, capture_output=True, text=True, check=False
    )
    if proc.returncode != 0:
        raise RuntimeError(f"python -m betavae {' '.join(args)} failed:\n{proc.stdout[-3000:]}{proc.stderr[-3000:]}")
    return proc.stdout


def throughput(label: str, extra: list[str], devices: int, opts: argparse.Namespace, workdir: Path) -> dict:
    """One timed training epoch; images/s of all processes together."""
    name = label.replace(" ", "_").replace(",", "")
    prefix = workdir / f"timer_{name}"
    args = [
        "fit",
        *base_args(opts.num_images, opts.accelerator, workdir, name),
        f"--trainer.devices={devices}",
        *(["--trainer.strategy=ddp"] if devices > 1 else []),
        "--trainer.max_epochs=1",
        f"--trainer.limit_val_batches={opts.val_batches}",
        "--trainer.num_sanity_val_steps=0",
        "--trainer.callbacks+=benchmark_scaling.StepTimer",
        f"--trainer.callbacks.output={prefix}",
        f"--trainer.callbacks.warmup={opts.warmup}",
        *extra,
    ]
    betavae(args, workdir)
    ranks = [json.loads(Path(f"{prefix}.rank{r}.json").read_text()) for r in range(devices)]
    images = sum(r["images"] for r in ranks)
    seconds = max(r["seconds"] for r in ranks)
    return {
        "label": label,
        "devices": devices,
        "images_per_s": images / seconds,
        "threads": ranks[0]["threads"],
        "scores": val_scores(workdir / name),  # after the timed epoch, on the same validation batches
    }


def validate(label: str, extra: list[str], ckpt: Path, opts: argparse.Namespace, workdir: Path) -> dict[str, float]:
    """Validation scores of ``ckpt`` (same data, one process) with the given switches."""
    name = "val_" + label.replace(" ", "_")
    args = [
        "validate",
        *base_args(opts.num_images, opts.accelerator, workdir, name),
        "--trainer.devices=1",
        f"--trainer.limit_val_batches={opts.val_batches}",
        f"--ckpt_path={ckpt}",
        *extra,
    ]
    betavae(args, workdir)
    return val_scores(workdir / name)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--num-images", type=int, default=3200, help="dataset size (75%% are trained on)")
    parser.add_argument("--devices", type=int, nargs="+", default=[1, 2], help="process counts to compare")
    parser.add_argument("--warmup", type=int, default=3, help="untimed batches at the start of the epoch")
    parser.add_argument("--val-batches", type=int, default=8, help="validation batches for the score check")
    parser.add_argument("--accelerator", default="cpu", choices=["cpu", "gpu"])
    parser.add_argument("--no-compile", action="store_true", help="skip the torch.compile run")
    parser.add_argument("--channels-last", action="store_true", help="also run with channels_last weights")
    parser.add_argument("--json", type=Path, default=None, help="also write the rows and scores as JSON here")
    parser.add_argument("--tolerance", type=float, default=0.02, help="largest relative score change allowed")
    opts = parser.parse_args()
    if 1 not in opts.devices:
        parser.error("--devices must include 1 (the baseline)")

    switches = {"bf16-mixed": ["--trainer.precision=bf16-mixed"]}
    if opts.channels_last:
        switches["channels_last"] = ["--model.init_args.channels_last=true"]
    if not opts.no_compile:
        switches["compile"] = ["--model.init_args.compile=true"]
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        rows = []
        for devices in sorted(opts.devices):
            rows.append(throughput(f"{devices} process{'es' if devices > 1 else ''}, fp32", [], devices, opts, workdir))
            print(f"{rows[-1]['label']}: {rows[-1]['images_per_s']:.1f} images/s", flush=True)
        for label, extra in switches.items():
            rows.append(throughput(f"1 process, {label}", extra, 1, opts, workdir))
            print(f"{rows[-1]['label']}: {rows[-1]['images_per_s']:.1f} images/s", flush=True)
        ckpt = next((workdir / "1_process_fp32").glob("version_*/checkpoints/last.ckpt"))
        scores = {"fp32": validate("fp32", [], ckpt, opts, workdir)}
        for label, extra in switches.items():
            scores[label] = validate(label, extra, ckpt, opts, workdir)

    base = rows[0]["images_per_s"]
    device = torch.cuda.get_device_name() if opts.accelerator == "gpu" else f"CPU, {os.cpu_count()} cores"
    print(f"\nβ-VAE 64x64x3, latent 128, batch 64 per process, {device}")
    print("| run | images/s | vs 1 process fp32 | scaling efficiency |\n|---|---|---|---|")
    for row in rows:
        ratio = row["images_per_s"] / base
        efficiency = f"{ratio / row['devices']:.2f}" if row["label"].endswith("fp32") else "—"
        print(f"| {row['label']} | {row['images_per_s']:.1f} | {ratio:.2f}x | {efficiency} |")
    keys = ("val/loss", "val/psnr", "val/ssim")
    header = "| " + " | ".join(keys) + " | max relative difference from fp32 |\n|---|---|---|---|---|"
    worst = 0.0

    def table_row(label: str, values: dict[str, float], reference: dict[str, float]) -> tuple[str, float]:
        diff = max(abs(values[k] - reference[k]) / abs(reference[k]) for k in keys)
        return f"| {label} | " + " | ".join(f"{values[k]:.5f}" for k in keys) + f" | {diff:.2e} |", diff

    print(f"\nScores after the timed epoch (same seed and data; {opts.val_batches} validation batches):")
    print("| run " + header)
    for row in rows:
        line, diff = table_row(row["label"], row["scores"], rows[0]["scores"])
        print(line)
        if row["devices"] == 1:  # N processes train with an N-times larger global batch: not comparable
            worst = max(worst, diff)
    print("\nThe 1-process fp32 checkpoint validated with each switch (inference numerics only):")
    print("| switch " + header)
    for label, values in scores.items():
        line, diff = table_row(label, values, scores["fp32"])
        print(line)
        worst = max(worst, diff)
    tolerance = opts.tolerance
    print(f"\n1-process scores within {tolerance:g} (relative) of fp32: {'PASS' if worst <= tolerance else 'FAIL'}")
    if opts.json is not None:
        record = {"device": device, "rows": rows, "checkpoint_scores": scores, "worst": worst, "tolerance": tolerance}
        opts.json.write_text(json.dumps(record, indent=1))
    return 0 if worst <= tolerance else 1


if __name__ == "__main__":
    sys.exit(main())

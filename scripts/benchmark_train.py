"""Framework overhead: images/s of one training epoch through ``betavae fit`` vs a bare PyTorch loop.

Both sides train the study's β-VAE (64x64x3, latent 128, batch 64, Adam lr 0.005) on the same
batches (the same ``ShapesDataModule`` and seed) in this one process, alternating A B A B ... so
drift of the machine hits both. The framework side is the real CLI with its defaults: logging,
NaN guard, progress bar, checkpointing, image grids and curves (validation is off: the bare loop
has none). The first ``--warmup`` batches of each epoch are not timed.

    python scripts/benchmark_train.py                 # CPU, ~5 minutes on 2 cores
    python scripts/benchmark_train.py --accelerator gpu --num-images 20000

Target: framework / bare >= 0.95 (exit status 1 when missed).
"""

from __future__ import annotations

import argparse  # a benchmark script, not a betavae command: plain argparse is enough here
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import lightning as L
import torch
import torch.nn.functional as F

from betavae.cli import BetaVAECLI
from betavae.data import ShapesDataModule
from betavae.models import BetaVAE

TARGET = 0.95


class EpochTimer(L.Callback):
    """Seconds and images from the start of batch ``warmup`` to the end of the training epoch."""

    def __init__(self, warmup: int) -> None:
        self.warmup = warmup
        self.start = self.seconds = None
        self.images = 0

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        if batch_idx == self.warmup:
            self._sync(pl_module.device)
            self.start = time.perf_counter()
        if batch_idx >= self.warmup:
            self.images += batch["image"].shape[0]

    def on_train_epoch_end(self, trainer, pl_module):
        self._sync(pl_module.device)
        self.seconds = time.perf_counter() - self.start

    @staticmethod
    def _sync(device: torch.device) -> None:
        if device.type == "cuda":
            torch.cuda.synchronize(device)


def data_args(num_images: int) -> list[str]:
    return [
        "--data=betavae.data.ShapesDataModule",
        "--data.init_args.channels=3",
        "--data.init_args.image_size=64",
        f"--data.init_args.num_images={num_images}",
        "--data.init_args.batch_size=64",
    ]


def run_framework(num_images: int, warmup: int, accelerator: str, workdir: str) -> float:
    timer = EpochTimer(warmup)
    BetaVAECLI(
        args=[
            "fit",
            "--model=betavae.models.BetaVAE",
            "--model.init_args.beta=10",
            *data_args(num_images),
            "--trainer.max_epochs=1",
            "--trainer.limit_val_batches=0",
            "--trainer.num_sanity_val_steps=0",
            f"--trainer.accelerator={accelerator}",
            "--trainer.devices=1",
            f"--trainer.default_root_dir={workdir}",
            "--trainer.logger=lightning.pytorch.loggers.CSVLogger",
            f"--trainer.logger.save_dir={workdir}",
            "--seed_everything=0",
        ],
        trainer_defaults={"callbacks": [timer]},
    )
    return timer.images / timer.seconds


def run_bare(num_images: int, warmup: int, accelerator: str) -> float:
    L.seed_everything(0, verbose=False)
    device = torch.device("cuda" if accelerator == "gpu" else "cpu")
    data = ShapesDataModule(channels=3, image_size=64, num_images=num_images, batch_size=64)
    data.setup("fit")
    model = BetaVAE(in_channels=3, image_size=64, mean=data.mean, std=data.std, beta=10).to(device).train()
    optimizer = torch.optim.Adam(model.parameters(), lr=0.005)
    beta_kl = model.hparams.beta * model.hparams.kld_weight
    images, start = 0, None
    for i, batch in enumerate(data.train_dataloader()):
        if i == warmup:
            EpochTimer._sync(device)
            start = time.perf_counter()
        x = data.prepare_batch({"image": batch["image"].to(device, non_blocking=True)}, train=True)["image"]
        x_hat, posterior = model(x)
        loss = F.mse_loss(x_hat, x) + beta_kl * posterior.kl().mean()
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        if i >= warmup:
            images += x.shape[0]
    EpochTimer._sync(device)
    return images / (time.perf_counter() - start)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--num-images", type=int, default=2400, help="dataset size (75%% are trained on)")
    parser.add_argument("--rounds", type=int, default=5, help="alternating rounds of each side")
    parser.add_argument("--warmup", type=int, default=3, help="untimed batches at the start of each epoch")
    parser.add_argument("--accelerator", default="cpu", choices=["cpu", "gpu"])
    parser.add_argument("--json", type=Path, default=None, help="also write the figures as JSON here")
    args = parser.parse_args()

    framework, bare = [], []
    with tempfile.TemporaryDirectory() as workdir:
        for r in range(args.rounds):
            bare.append(run_bare(args.num_images, args.warmup, args.accelerator))
            framework.append(run_framework(args.num_images, args.warmup, args.accelerator, workdir))
            print(f"round {r + 1}: bare {bare[-1]:.1f} img/s, betavae fit {framework[-1]:.1f} img/s", flush=True)
    f, b = statistics.median(framework), statistics.median(bare)
    ratio = f / b
    device = torch.cuda.get_device_name() if args.accelerator == "gpu" else f"CPU x{torch.get_num_threads()} threads"
    print(f"\nβ-VAE 64x64x3, batch 64, {device}, median of {args.rounds} rounds")
    print("| loop | images/s |\n|---|---|")
    print(f"| bare PyTorch | {b:.1f} |\n| betavae fit | {f:.1f} |")
    print(f"ratio framework/bare = {ratio:.3f} (target >= {TARGET}): {'PASS' if ratio >= TARGET else 'FAIL'}")
    if args.json is not None:
        args.json.write_text(json.dumps({"device": device, "bare": b, "framework": f, "ratio": ratio}))
    return 0 if ratio >= TARGET else 1


if __name__ == "__main__":
    sys.exit(main())

"""Lightning's DDP on 2 CPU processes (gloo): the logged validation scores equal the single-process ones.

A tiny fit runs through the real CLI as ``python -m betavae fit --trainer.strategy ddp --trainer.devices 2``
(Lightning re-launches the command for rank 1), then the checkpoint it wrote is validated in one process
on the same data. Every score the DDP run logged at the end of its epoch (loss and its parts, PSNR,
SSIM, FID on a small feature network) must equal the single-process score: metric states are synced,
not averaged per rank, the split is the same on every rank, the prior samples of FID are the same
however many processes share them, and every rank evaluates the model that was checkpointed.
"""

from __future__ import annotations

import csv
import json
import os
import sys
from pathlib import Path

import pytest
from helpers import run_process

from betavae.cli import BetaVAECLI
from betavae.disentanglement import SAMPLE_KEYS

TESTS = Path(__file__).resolve().parent

# 64 shapes: 16 validation images = 2 ranks x 2 batches x 4, so the distributed sampler repeats none
COMMON = [
    "--model=betavae.models.BetaVAE",
    "--model.init_args.encoder.init_args.hidden_channels=[8,16]",
    "--model.init_args.decoder.init_args.hidden_channels=[8,16]",
    "--model.init_args.latent_dim=4",
    "--data=betavae.data.ShapesDataModule",
    "--data.init_args.num_images=64",
    "--data.init_args.image_size=16",
    "--data.init_args.batch_size=4",
    "--trainer.accelerator=cpu",
    "--trainer.logger=lightning.pytorch.loggers.CSVLogger",
    "--trainer.logger.save_dir=runs",
    "--trainer.enable_model_summary=false",
    "--progress_bar.refresh_rate=0",
    "--traversal.top_k=2",
    "--fid.every_n_epochs=1",
    "--fid.num_samples=10",
    "--fid.batch_size=3",
    "--fid.kid_subset_size=4",
    "--fid.feature_extractor=helpers.CountingFeatures",
    "--seed_everything=0",
]
SCORES = ("val/loss", "val/recon", "val/kl", "val/psnr", "val/ssim", "val/fid")


def run_cli(args: list[str], cwd: Path, timeout: float = 300) -> str:
    """``python -m betavae ARGS`` in ``cwd`` (the tests folder importable); killed if it hangs."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(TESTS), os.environ.get("PYTHONPATH", "")])}
    env.update(WANDB_MODE="offline")
    return run_process([sys.executable, "-m", "betavae", *args], env, timeout, cwd=cwd)


def test_ddp_scores_equal_single_process_scores(tmp_path, monkeypatch):
    fit = ["fit", *COMMON, "--trainer.logger.name=ddp", "--trainer.strategy=ddp", "--trainer.devices=2"]
    run_cli([*fit, "--trainer.max_epochs=1", "--trainer.limit_train_batches=3"], tmp_path)
    run = tmp_path / "runs" / "ddp" / "version_0"
    with (run / "metrics.csv").open() as f:
        ddp = next(r for r in csv.DictReader(f) if r.get("val/psnr"))
    assert (run / "images" / "traversal_epoch=000.png").is_file()
    assert not list(tmp_path.glob("runs/ddp/version_1"))  # rank 1 wrote no run of its own
    records = (run / "fid.jsonl").read_text().splitlines()
    assert len(records) == 1 and '"num_samples": 10' in records[0] and '"num_real": 16' in records[0]

    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(str(TESTS))
    args = ["validate", *COMMON, "--trainer.logger.name=single", "--trainer.devices=1"]
    cli = BetaVAECLI(args=[*args, f"--ckpt_path={run / 'checkpoints' / 'last.ckpt'}"])
    single = {k: float(v) for k, v in cli.trainer.callback_metrics.items()}
    for key in SCORES:
        assert float(ddp[key]) == pytest.approx(single[key], rel=1e-5, abs=1e-6), key


@pytest.mark.slow
def test_ddp_disentanglement_metrics_on_attributes_equal_single_process(tmp_path, monkeypatch):
    """Attribute data: every rank's validation codes are gathered (the sampler's repeat of one image dropped)
    and scored on rank zero; the numbers equal those of one process validating the same checkpoint."""
    from conftest import write_celeba

    write_celeba(tmp_path / "celeba", count=76)  # 19 validation images: the sampler repeats one for rank 1
    preset = {"num_train": 40, "num_test": 20, "dci_train": 12, "dci_test": 7, "batch_size": 8}
    preset |= {"betavae_train": 10, "betavae_eval": 5, "factorvae_train": 10, "factorvae_eval": 5}
    preset |= {"factorvae_variance": 20}
    common = [
        "--model=betavae.models.BetaVAE",
        "--model.init_args.encoder.init_args.hidden_channels=[8,16]",
        "--model.init_args.decoder.init_args.hidden_channels=[8,16]",
        "--model.init_args.latent_dim=4",
        "--data=betavae.data.CelebADataModule",
        f"--data.init_args.root={tmp_path / 'celeba'}",
        "--data.init_args.image_size=16",
        "--data.init_args.batch_size=4",
        "--trainer.accelerator=cpu",
        "--trainer.logger=lightning.pytorch.loggers.CSVLogger",
        "--trainer.logger.save_dir=runs",
        "--trainer.enable_model_summary=false",
        "--progress_bar.refresh_rate=0",
        "--traversal.top_k=2",
        "--disentanglement.every_n_epochs=1",
        f"--disentanglement.preset={json.dumps(preset)}",
        "--seed_everything=0",
    ]
    fit = ["fit", *common, "--trainer.logger.name=ddp", "--trainer.strategy=ddp", "--trainer.devices=2"]
    run_cli([*fit, "--trainer.max_epochs=1", "--trainer.limit_train_batches=2"], tmp_path)
    run = tmp_path / "runs" / "ddp" / "version_0"
    with (run / "metrics.csv").open() as f:
        ddp = next(r for r in csv.DictReader(f) if r.get("val/mig"))
    record = json.loads((run / "disentanglement.jsonl").read_text())
    assert record["n"] == 19 and record["basis"] == "celeba validation split, 3 attributes"

    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(str(TESTS))
    args = ["validate", *common, "--trainer.logger.name=single", "--trainer.devices=1"]
    cli = BetaVAECLI(args=[*args, f"--ckpt_path={run / 'checkpoints' / 'last.ckpt'}"])
    single = {k: float(v) for k, v in cli.trainer.callback_metrics.items()}
    for key in SAMPLE_KEYS:
        assert float(ddp[f"val/{key}"]) == pytest.approx(single[f"val/{key}"], rel=1e-5, abs=1e-6), key

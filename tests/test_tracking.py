"""W&B runs carry the comparison keys, a group per dataset, β tags, and keep their id across resumes."""

from __future__ import annotations

from pathlib import Path

import pytest
import wandb
from conftest import SHAPES, TINY, conv_nets

from betavae.cli import BetaVAECLI
from betavae.data import ShapesDataModule
from betavae.models import VAE, Autoencoder, BetaVAE
from betavae.nets import LinearNet
from betavae.tracking import ID_FILE, run_info, run_tags, wandb_run_id

WANDB = [
    "--trainer.logger+=lightning.pytorch.loggers.WandbLogger",
    "--trainer.logger.save_dir=runs/test",
    "--trainer.logger.project=betavae-tests",
]


def test_every_variant_reports_the_same_keys():
    data = ShapesDataModule(num_images=8, image_size=16)
    beta = run_info(BetaVAE(in_channels=1, image_size=16, **conv_nets(8, 16), latent_dim=4, beta=10), data)
    vae = run_info(VAE(in_channels=1, image_size=16, **conv_nets(8, 16), latent_dim=4), data)
    ae = run_info(Autoencoder(net=LinearNet, in_channels=1, image_size=16), data)
    assert beta.keys() == vae.keys() == ae.keys()
    assert beta["dataset"] == "shapes" and beta["variant"] == "BetaVAE" and beta["beta"] == 10.0
    assert beta["latent_dim"] == 4 and beta["kld_weight"] == pytest.approx(0.0025)
    assert vae["beta"] == 1.0 and ae["beta"] is None
    assert run_tags(beta) == ["shapes", "BetaVAE", "beta10"] and run_tags(ae) == ["shapes", "Autoencoder"]


def test_run_id_rule(tmp_path, monkeypatch):
    for key in ("SLURM_JOB_ID", "SLURM_ARRAY_JOB_ID", "SLURM_ARRAY_TASK_ID"):
        monkeypatch.delenv(key, raising=False)
    root_dir = tmp_path / "root"
    fresh = {wandb_run_id(root_dir, "celeba_beta10", None) for _ in range(3)}
    assert len(fresh) == 3  # a new run, a new id
    run = tmp_path / "runs" / "x" / "version_0"
    (run / "checkpoints").mkdir(parents=True)
    (run / ID_FILE).write_text("abc123\n")
    assert wandb_run_id(root_dir, "x", str(run / "checkpoints" / "last.ckpt")) == "abc123"  # resumed: same run
    monkeypatch.setenv("SLURM_JOB_ID", "4242")
    assert wandb_run_id(root_dir, "celeba beta/10", None) == "celeba-beta-10-4242"  # a requeued job: same id
    monkeypatch.setenv("SLURM_ARRAY_JOB_ID", "77")
    monkeypatch.setenv("SLURM_ARRAY_TASK_ID", "3")
    assert wandb_run_id(root_dir, "celeba", None) == "celeba-77_3"
    root = root_dir
    root.mkdir()
    (root / ID_FILE).write_text("kept\n")  # where Lightning keeps its hpc_ckpt_N.ckpt
    assert wandb_run_id(root_dir, "celeba", None) == "celeba-77_3"  # no hpc checkpoint: not a resume
    (root / "hpc_ckpt_1.ckpt").write_bytes(b"")
    assert wandb_run_id(root_dir, "celeba", None) == "kept"


def fit(tmp_path: Path, *extra: str):
    args = ["fit", *SHAPES, *TINY, *WANDB, "--model.init_args.beta=10", *extra]
    cli = BetaVAECLI(args=args)
    logger = next(lg for lg in cli.trainer.loggers if lg.__class__.__name__ == "WandbLogger")
    run = logger.experiment
    seen = {"id": run.id, "group": run.group, "tags": tuple(run.tags), "config": dict(run.config)}
    wandb.finish()
    return cli.trainer, seen


def test_runs_carry_keys_group_tags_and_resume_the_same_wandb_run(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    trainer, first = fit(tmp_path)
    assert first["group"] == "shapes"
    assert {"shapes", "BetaVAE", "beta10"} <= set(first["tags"])
    config = first["config"]
    assert (config["dataset"], config["variant"], config["beta"], config["latent_dim"]) == ("shapes", "BetaVAE", 10, 4)
    assert config["kld_weight"] == pytest.approx(0.0025)
    assert (Path(trainer.log_dir) / ID_FILE).read_text().strip() == first["id"]

    _, resumed = fit(tmp_path, "--ckpt_path=last", "--trainer.max_epochs=2")
    assert resumed["id"] == first["id"]  # --ckpt_path last continues the same W&B run
    _, fresh = fit(tmp_path)
    assert fresh["id"] != first["id"]  # a new run is a new W&B run

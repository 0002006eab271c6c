"""A run never loses more than the epoch it is in, and every failure is one clear message.

Checkpoints: ``last.ckpt`` at every epoch end whatever the monitor does, atomic writes, unreadable
candidates skipped by ``--ckpt_path last``, SIGTERM saves and exits non-zero, SLURM's SIGUSR1 requeue.
Failures: NaN in validation, garbage checkpoints, too few images, linked settings given by hand, one
message without a traceback, nothing left behind by a run that never started.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from conftest import SHAPES, TINY, write_images

from betavae.checkpoints import AtomicCheckpointIO, check_checkpoint, find_last_checkpoint, temporary_path
from betavae.cli import BetaVAECLI, main
from betavae.data import ImageFolderDataModule
from betavae.errors import CheckpointError, DataError
from betavae.models import NonFiniteLossError

TESTS = Path(__file__).resolve().parent
REPO = TESTS.parent
EPOCHS_OF_2 = [*SHAPES, *TINY, "--trainer.limit_val_batches=1"]  # 2 training batches per epoch


def fit(*extra: str) -> BetaVAECLI:
    return BetaVAECLI(args=["fit", *EPOCHS_OF_2, *extra])


def checkpoint_of(path: Path) -> dict:
    return torch.load(path, map_location="cpu", weights_only=False)


def cli_exit(args: list[str], capsys: pytest.CaptureFixture) -> tuple[int, str]:
    """Run ``main(args)``; return its exit code and what it printed on stderr."""
    with pytest.raises(SystemExit) as exit_info:
        main(args)
    return exit_info.value.code, capsys.readouterr().err


# ---------------------------------------------------------------- 1. last.ckpt every epoch
@pytest.mark.slow  # a minute or more: the fast tier keeps to ~12 min on 2 cores; its parts are tested fast elsewhere
def test_last_checkpoint_follows_every_epoch_when_the_monitor_never_improves(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    cli = fit("--trainer.max_epochs=3", "--checkpoint.mode=max")  # val/loss falls: "max" improves only once
    folder = Path(cli.trainer.log_dir) / "checkpoints"
    last = checkpoint_of(folder / "last.ckpt")
    assert last["global_step"] == 6 and last["epoch"] == 2  # the end of the third epoch, the end of fit
    best = [p for p in folder.glob("best-*.ckpt")]
    assert len(best) == 1 and "epoch=000" in best[0].name  # the monitor's best stays the first epoch


def test_last_checkpoint_holds_the_end_of_fit_within_an_epoch(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    cli = fit("--trainer.max_epochs=5", "--trainer.max_steps=3")
    assert checkpoint_of(Path(cli.trainer.log_dir) / "checkpoints" / "last.ckpt")["global_step"] == 3


# ---------------------------------------------------------------- 3. atomic writes, unreadable candidates
def test_a_failed_write_keeps_the_old_checkpoint_and_leaves_no_temporary(tmp_path, monkeypatch):
    path = tmp_path / "last.ckpt"
    io = AtomicCheckpointIO()
    io.save_checkpoint({"state_dict": {"w": torch.ones(3)}}, path)

    def killed_midway(obj, f, *args, **kwargs):
        f.write(b"PK\x03\x04 half a checkpoint")
        raise KeyboardInterrupt

    monkeypatch.setattr(torch, "save", killed_midway)
    with pytest.raises(KeyboardInterrupt):
        io.save_checkpoint({"state_dict": {"w": torch.zeros(3)}}, path)
    assert torch.equal(checkpoint_of(path)["state_dict"]["w"], torch.ones(3))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["last.ckpt"]


def test_runs_write_checkpoints_through_the_atomic_writer(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    cli = fit()
    assert isinstance(cli.trainer.strategy.checkpoint_io, AtomicCheckpointIO)
    folder = Path(cli.trainer.log_dir) / "checkpoints"
    assert (folder / "last.ckpt").is_file() and not list(folder.glob(".*"))


def dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


@pytest.mark.slow  # a minute or more: the fast tier keeps to ~12 min on 2 cores; its parts are tested fast elsewhere
def test_resume_last_skips_unreadable_checkpoints_and_abandoned_temporaries(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    first = fit()
    good = Path(first.trainer.log_dir) / "checkpoints" / "last.ckpt"
    broken = tmp_path / "runs" / "test" / "version_9" / "checkpoints" / "last.ckpt"
    broken.parent.mkdir(parents=True)
    broken.write_bytes(b"")  # a kill during the final move of a copy: newer, but empty
    abandoned = broken.with_name(f".last.ckpt.{socket.gethostname()}.{dead_pid()}.tmp")
    abandoned.write_bytes(b"PK\x03\x04")
    assert Path(find_last_checkpoint(tmp_path / "runs" / "test")).resolve() == good.resolve()
    assert not abandoned.exists()
    with pytest.warns(UserWarning, match="skipped unreadable checkpoint.*version_9.*empty"):
        resumed = fit("--ckpt_path=last", "--trainer.max_epochs=2")
    assert resumed.trainer.global_step == 4  # continued from the good one (step 2)


def test_temporary_names_are_hidden_and_name_host_and_process(tmp_path):
    tmp = temporary_path(tmp_path / "last.ckpt")
    assert tmp.parent == tmp_path and tmp.name.startswith(".last.ckpt.") and str(os.getpid()) in tmp.name


# ---------------------------------------------------------------- 4. SIGTERM and SLURM's SIGUSR1
def subprocess_env(tmp_path: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SLURM_")}
    env.update(PYTHONPATH=os.pathsep.join([str(TESTS), str(REPO)]), WANDB_MODE="offline", **extra)
    return env


def slow_fit_args(*extra: str) -> list[str]:
    return [
        sys.executable,
        "-m",
        "betavae",
        "fit",
        "--model=helpers.SlowBetaVAE",
        "--model.init_args.seconds=0.2",
        *SHAPES[1:],
        *TINY,
        "--data.init_args.num_images=200",
        "--trainer.limit_train_batches=null",
        "--trainer.max_epochs=50",
        *extra,
    ]


def wait_for(predicate, proc: subprocess.Popen, timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if proc.poll() is not None:
            pytest.fail(f"the run ended early with {proc.returncode}:\n{proc.communicate()[1][-3000:]}")
        if time.monotonic() > deadline:
            proc.kill()
            pytest.fail(f"timed out:\n{proc.communicate()[1][-3000:]}")
        time.sleep(0.2)


def test_sigterm_saves_the_run_says_how_to_resume_and_exits_non_zero(tmp_path):
    proc = subprocess.Popen(
        slow_fit_args(),
        cwd=tmp_path,
        env=subprocess_env(tmp_path),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    last = tmp_path / "runs" / "test" / "version_0" / "checkpoints" / "last.ckpt"
    wait_for(last.is_file, proc)  # the first epoch is over (37 steps of 0.2 s): kill it during the second
    step_at_epoch_end = checkpoint_of(last)["global_step"]
    time.sleep(1.5)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 128 + signal.SIGTERM, err[-3000:]
    assert "Stopped by SIGTERM" in err and "Resume with:" in err and "--ckpt_path" in err
    assert checkpoint_of(last)["global_step"] > step_at_epoch_end  # the current epoch is not lost
    assert not list(last.parent.glob(".*"))


@pytest.mark.slow  # a minute or more: the fast tier keeps to ~12 min on 2 cores; its parts are tested fast elsewhere
def test_slurm_sigusr1_still_saves_the_hpc_checkpoint_and_requeues(tmp_path):
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    scontrol = bin_dir / "scontrol"
    scontrol.write_text(f'#!/bin/sh\necho "$@" > {tmp_path / "requeued"}\n')
    scontrol.chmod(0o755)
    slurm = {
        "SLURM_JOB_ID": "4242",
        "SLURM_JOB_NAME": "betavae",
        "SLURM_NNODES": "1",
        "SLURM_NTASKS": "1",
        "SLURM_NTASKS_PER_NODE": "1",
        "SLURM_PROCID": "0",
        "SLURM_LOCALID": "0",
        "SLURM_NODEID": "0",
        "SLURM_NODELIST": "localhost",
        "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}",
    }
    proc = subprocess.Popen(
        slow_fit_args("--trainer.default_root_dir=runs/slurm/4242"),
        cwd=tmp_path,
        env=subprocess_env(tmp_path, **slurm),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    wait_for((tmp_path / "runs" / "test" / "version_0" / "checkpoints" / "last.ckpt").is_file, proc)
    proc.send_signal(signal.SIGUSR1)
    hpc = tmp_path / "runs" / "slurm" / "4242" / "hpc_ckpt_1.ckpt"
    wait_for(lambda: hpc.is_file() and (tmp_path / "requeued").is_file(), proc)
    assert (tmp_path / "requeued").read_text().split() == ["requeue", "4242"]
    check_checkpoint(hpc)
    proc.send_signal(signal.SIGTERM)  # what SLURM sends when it requeues the job
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 128 + signal.SIGTERM, err[-3000:]


# ---------------------------------------------------------------- 5. divergence in validation
def test_a_nan_validation_loss_stops_the_run_like_a_training_nan(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    args = [
        "fit",
        "--model=helpers.NaNValidationBetaVAE",
        "--model.init_args.nan_at_epoch=1",
        *SHAPES[1:],
        *TINY,
        "--trainer.max_epochs=4",
        "--trainer.logger+=lightning.pytorch.loggers.WandbLogger",
        "--trainer.logger.save_dir=runs/test",
    ]
    with pytest.raises(NonFiniteLossError) as err:
        BetaVAECLI(args=args)
    message = str(err.value)
    assert "non-finite validation loss at epoch 1" in message and "global step 4" in message
    assert "recon=nan" in message and "kl=nan" in message and "last.ckpt" in message
    last = next((tmp_path / "runs").rglob("last.ckpt"))
    assert checkpoint_of(last)["global_step"] == 2  # the last good epoch
    assert next((tmp_path / "runs").rglob("metrics.csv")).read_text().count("\n") > 1


def test_callbacks_survive_non_finite_values(tmp_path, monkeypatch):
    """A diverging run's NaN/inf values reach W&B as finite ones: the histogram keeps the finite values only
    (none: nothing is logged), the image shows NaN pixels as black."""
    from lightning.pytorch.loggers import WandbLogger

    from betavae.callbacks._output import log_histogram, log_image

    metrics, shown = [], []
    monkeypatch.setattr(WandbLogger, "log_metrics", lambda self, values, step=None: metrics.append((values, step)))
    monkeypatch.setattr(
        WandbLogger, "log_image", lambda self, key, images, step=None, **kwargs: shown.append((key, images, step))
    )

    class Trainer:
        global_step = 7
        loggers = [WandbLogger(save_dir=str(tmp_path), offline=True, project="t")]

    trainer = Trainer()
    log_histogram(trainer, "val/kl_per_dim", torch.tensor([float("nan"), 1.0, float("inf")]))
    log_histogram(trainer, "val/kl_per_dim", torch.tensor([float("nan")]))  # nothing finite: nothing logged
    log_image(trainer, "val/samples", torch.full((3, 4, 4), float("nan")))
    assert len(metrics) == 1 and metrics[0][1] == 7
    histogram = metrics[0][0]["val/kl_per_dim"]
    assert sum(histogram.histogram) == 1  # the one finite value, 1.0
    assert min(histogram.bins) <= 1.0 <= max(histogram.bins)
    assert len(shown) == 1 and shown[0][0] == "val/samples" and shown[0][2] == 7
    (array,) = shown[0][1]
    assert array.shape == (4, 4, 3) and array.dtype == np.uint8 and (array == 0).all()


# ---------------------------------------------------------------- 6. garbage checkpoints
@pytest.mark.parametrize("command", ["fit", "validate", "test", "predict", "evaluate", "traverse", "explore"])
@pytest.mark.parametrize(
    ("content", "why"), [(b"", "it is empty"), (b"garbage " * 20, "it is not a PyTorch checkpoint")]
)
def test_a_garbage_checkpoint_is_named_for_every_command(command, content, why, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    bad = tmp_path / "bad.ckpt"
    bad.write_bytes(content)
    code, err = cli_exit([command, *SHAPES, *TINY, f"--ckpt_path={bad}"], capsys)
    assert code == 1
    assert f"{bad} is not a readable checkpoint: {why}" in err
    assert "weights_only" not in err and "Traceback" not in err
    assert not (tmp_path / "runs").exists()  # nothing left behind


def test_a_truncated_checkpoint_is_named(tmp_path):
    path = tmp_path / "cut.ckpt"
    torch.save({"state_dict": {"w": torch.ones(1000)}}, path)
    path.write_bytes(path.read_bytes()[:-300])
    with pytest.raises(CheckpointError, match="truncated"):
        check_checkpoint(path)


# ---------------------------------------------------------------- 7. too few images
def test_too_few_images_for_a_batch_fail_at_setup_with_the_minimum(tmp_path):
    write_images(tmp_path / "two", 2)
    data = ImageFolderDataModule(root=str(tmp_path / "two"), image_size=16, cache_dir=str(tmp_path / "cache"))
    data.prepare_data()
    with pytest.raises(DataError, match=r"2 usable image\(s\).*leave 1 for training.*at least 3 images"):
        data.setup("fit")
    write_images(tmp_path / "three", 3)
    data = ImageFolderDataModule(root=str(tmp_path / "three"), image_size=16, cache_dir=str(tmp_path / "cache"))
    data.prepare_data()
    data.setup("fit")
    assert len(data.train_set) == 2


# ---------------------------------------------------------------- 8. one message, nothing left behind
def test_a_setup_error_is_one_message_and_leaves_nothing_behind(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    args = ["fit", "--config", "cats_beta10.yaml", f"--data.init_args.root={tmp_path / 'missing'}"]
    code, err = cli_exit(args, capsys)
    assert code == 1
    assert err.startswith("betavae fit: error: image folder") and "Expected layout" in err
    assert "Traceback" not in err
    assert not (tmp_path / "runs").exists()  # no version_N, no offline W&B run


def test_a_failure_after_the_loggers_started_leaves_nothing_behind(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("BETAVAE_INCEPTION_WEIGHTS", str(tmp_path / "no_weights.pth"))
    args = ["fit", *SHAPES, *TINY, "--trainer.logger+=lightning.pytorch.loggers.WandbLogger"]
    args += ["--trainer.logger.save_dir=runs/test", "--fid.every_n_epochs=1"]  # FID fails at setup
    code, err = cli_exit(args, capsys)
    assert code == 1 and "InceptionV3 weights" in err and "Traceback" not in err
    assert not (tmp_path / "runs").exists()


def test_debug_switch_shows_the_traceback(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("BETAVAE_DEBUG", "1")
    with pytest.raises(FileNotFoundError, match="image folder"):
        main(["fit", "--config", "cats_beta10.yaml", f"--data.init_args.root={tmp_path / 'missing'}"])


def test_a_fresh_run_warns_about_no_existing_folder(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        fit("--trainer.logger+=lightning.pytorch.loggers.WandbLogger", "--trainer.logger.save_dir=runs/test")
    noisy = [str(w.message) for w in caught if "exists and is not empty" in str(w.message)]
    assert not noisy


# ---------------------------------------------------------------- 9. linked settings
@pytest.mark.parametrize(
    ("given", "instead"),
    [
        (["--model.init_args.in_channels", "3"], "data.init_args.channels"),
        (["--model.init_args.image_size=32"], "data.init_args.image_size"),
    ],
)
def test_a_linked_setting_given_by_hand_is_named(given, instead, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    code, err = cli_exit(["fit", *SHAPES, *TINY, *given], capsys)
    assert code == 2 and "linked from the data" in err and instead in err


def test_a_linked_setting_in_a_config_file_is_named(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    config = tmp_path / "mine.yaml"
    config.write_text(yaml.safe_dump({"model": {"class_path": "betavae.models.BetaVAE", "init_args": {"mean": [0.5]}}}))
    code, err = cli_exit(["fit", "--config", str(config), *SHAPES[1:], *TINY], capsys)
    assert code == 2 and "mean" in err and "data.init_args.mean" in err


@pytest.mark.slow  # a minute or more: the fast tier keeps to ~12 min on 2 cores; its parts are tested fast elsewhere
def test_a_checkpoint_of_other_shapes_names_both(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    ckpt = Path(fit().trainer.log_dir) / "checkpoints" / "last.ckpt"  # 1-channel shapes
    code, err = cli_exit(["validate", *SHAPES, *TINY, "--data.init_args.channels=3", f"--ckpt_path={ckpt}"], capsys)
    assert code == 1 and "does not fit" in err
    assert "checkpoint (8, 1, 3, 3), model (8, 3, 3, 3)" in err
    assert "in_channels: checkpoint 1, config 3 (set by data.init_args.channels)" in err


def test_a_run_config_with_lightnings_checkpoint_settings_still_loads(tmp_path, monkeypatch):
    # config.yaml files written while the CLI used Lightning's ModelCheckpoint hold save_on_exception
    monkeypatch.chdir(tmp_path)
    cli = BetaVAECLI(args=[*EPOCHS_OF_2, "--checkpoint.save_on_exception=false"], run=False)
    checkpoint = next(c for c in cli.trainer.callbacks if type(c).__name__ == "RunCheckpoint")
    assert checkpoint.save_on_exception is False and checkpoint.keep_last

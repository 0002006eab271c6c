"""Reliability, second round (issue 23): concurrent runs never share a folder, a resume never silently ignores
a setting, one bad file never sinks a command, a full disk is one message. One test (or more) per case of
``docs/reliability.md``; each failed on the main branch before the fix.
"""

from __future__ import annotations

import errno
import json
import multiprocessing
import os
import pickle
import shutil
from pathlib import Path

import pytest
import torch
import yaml
from conftest import SHAPES, TINY, write_broken_images, write_images

from betavae.checkpoints import AtomicCheckpointIO, find_last_checkpoint
from betavae.cli import BetaVAECLI, main
from betavae.errors import CheckpointError

RUN = [*SHAPES, *TINY]
MODEL = [a for a in SHAPES if a.startswith("--model")]


def folder_run(root: str = "images", *extra: str) -> list[str]:
    """``fit`` arguments of a tiny run on an image folder."""
    data = ["--data=betavae.data.ImageFolderDataModule", f"--data.init_args.root={root}", "--data.init_args.image_size=16"]
    return ["fit", *MODEL, *TINY, *data, *extra]


def fit(*extra: str) -> BetaVAECLI:
    return BetaVAECLI(args=["fit", *RUN, *extra])


def cli_exit(args: list[str], capsys: pytest.CaptureFixture) -> tuple[int, str]:
    """Run ``main(args)``; return its exit code and what it printed on stderr."""
    with pytest.raises(SystemExit) as exit_info:
        main(args)
    return exit_info.value.code, capsys.readouterr().err


def one_message(err: str, command: str) -> str:
    """The one error line of ``err``: no traceback around it."""
    assert "Traceback" not in err, err
    lines = [line for line in err.splitlines() if line.startswith(f"betavae {command}: error:")]
    assert len(lines) == 1, err
    return lines[0]


# ---------------------------------------------------------------- 1. concurrent runs claim their own version_N
def _claim(root: str, barrier: multiprocessing.synchronize.Barrier, queue: multiprocessing.Queue) -> None:
    from betavae.versions import claim_version

    barrier.wait()  # all four at the same moment
    queue.put(claim_version(root)[0])


def test_four_processes_started_together_claim_four_version_folders(tmp_path):
    context = multiprocessing.get_context("spawn")
    barrier, queue = context.Barrier(4), context.Queue()
    (tmp_path / "exp" / "version_0").mkdir(parents=True)  # an earlier run
    procs = [context.Process(target=_claim, args=(str(tmp_path / "exp"), barrier, queue)) for _ in range(4)]
    for proc in procs:
        proc.start()
    for proc in procs:
        proc.join(60)
    assert sorted(queue.get(timeout=5) for _ in procs) == [1, 2, 3, 4]
    assert sorted(p.name for p in (tmp_path / "exp").iterdir()) == [f"version_{i}" for i in range(5)]


def test_a_run_claims_its_folder_before_the_logger_starts(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    seen = []

    def check_then(self: BetaVAECLI) -> None:  # Lightning's logger has not written anything yet
        version = self.config.fit.trainer.logger.init_args.version
        seen.append((version, (tmp_path / "runs" / "test" / f"version_{version}").is_dir()))
        self._check_checkpoint()

    monkeypatch.setattr(BetaVAECLI, "before_fit", check_then)
    first = fit()
    assert seen == [(0, True)] and Path(first.trainer.log_dir).name == "version_0"
    assert (Path(first.trainer.log_dir) / "metrics.csv").is_file()


@pytest.mark.slow
def test_two_cli_runs_started_together_get_two_folders(tmp_path):
    import subprocess
    import sys

    env = {**os.environ, "WANDB_MODE": "offline", "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    args = [sys.executable, "-m", "betavae", "fit", *RUN]
    procs = [subprocess.Popen(args, cwd=tmp_path, env=env, stderr=subprocess.PIPE, text=True) for _ in range(2)]
    errs = [proc.communicate(timeout=300)[1] for proc in procs]
    assert [proc.returncode for proc in procs] == [0, 0], errs
    assert not any("exists and is not empty" in err for err in errs)
    folders = sorted((tmp_path / "runs" / "test").iterdir())
    assert [f.name for f in folders] == ["version_0", "version_1"]
    for folder in folders:  # each run's own rows: one header, epoch 0 only
        rows = (folder / "metrics.csv").read_text().splitlines()
        assert sum(row.startswith("epoch") or "val/loss" in row.split(",")[0] for row in rows[:1]) == 1
        assert len(list((folder / "checkpoints").glob("*.ckpt"))) == 2  # best and last, no -v1 twins


# ---------------------------------------------------------------- 8. a file where a folder must be
def test_runs_folder_that_is_a_file_is_one_message(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "runs").write_text("not a folder")
    code, err = cli_exit(["fit", *RUN], capsys)
    assert code == 1 and "runs is a file, not a folder" in one_message(err, "fit")


def test_cache_dir_that_is_a_file_is_one_message(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    write_images(tmp_path / "images", 12)
    (tmp_path / "cache").write_text("not a folder")
    code, err = cli_exit(folder_run("images", "--data.init_args.cache_dir=cache"), capsys)
    message = one_message(err, "fit")
    assert code == 1 and "cache is a file, not a folder" in message and "cache_dir" in message
    assert not (tmp_path / "runs" / "test" / "version_0").exists()  # the failed run leaves nothing behind

"""Reliability, second round (issue 23): concurrent runs never share a folder, a resume never silently ignores
a setting, one bad file never sinks a command, a full disk is one message. One test (or more) per case of
``docs/reliability.md``; each failed on the main branch before the fix.
"""

from __future__ import annotations

import csv
import errno
import json
import multiprocessing
import os
import pickle
import shutil
import time
from pathlib import Path

import pytest
import torch
import yaml
from conftest import SHAPES, TINY, write_broken_images, write_images
from jsonargparse import Namespace

from betavae.checkpoints import AtomicCheckpointIO, find_last_checkpoint
from betavae.cli import BetaVAECLI, main
from betavae.errors import CheckpointError
from betavae.versions import keep_pinned_logs

RUN = [*SHAPES, *TINY]
MODEL = [a for a in SHAPES if a.startswith("--model")]


def folder_run(root: str = "images", *extra: str) -> list[str]:
    """``fit`` arguments of a tiny run on an image folder."""
    data = [
        "--data=betavae.data.ImageFolderDataModule",
        f"--data.init_args.root={root}",
        "--data.init_args.image_size=16",
    ]
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
    context = multiprocessing.get_context("fork")  # four processes, released together by the barrier
    barrier, queue = context.Barrier(4), context.Queue()
    (tmp_path / "exp" / "version_0").mkdir(parents=True)  # an earlier run
    procs = [context.Process(target=_claim, args=(str(tmp_path / "exp"), barrier, queue)) for _ in range(4)]
    for proc in procs:
        proc.start()
    for proc in procs:
        proc.join(120)
    assert sorted(queue.get(timeout=30) for _ in procs) == [1, 2, 3, 4]
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


def test_a_pinned_csv_log_is_kept_when_the_fit_logs_there_again(tmp_path, monkeypatch):
    """A fit given its logger's version resumes into the folder (as the study does): Lightning's CSVLogger would
    delete the first fit's metrics.csv; it is moved aside, named in a warning, and the new rows go on after it."""
    monkeypatch.chdir(tmp_path)
    fit("--trainer.logger.init_args.version=0")
    folder = tmp_path / "runs" / "test" / "version_0"
    first = (folder / "metrics.csv").read_text()
    with pytest.warns(UserWarning, match="kept the training log so far as .*metrics.until_.*csv") as record:
        resumed = fit("--trainer.logger.init_args.version=0", "--trainer.max_epochs=2", "--ckpt_path=last")
    assert (
        resumed.trainer.global_step == 4 and len([w for w in record if "kept the training log" in str(w.message)]) == 1
    )
    kept = list(folder.glob("metrics.until_*.csv"))
    assert len(kept) == 1 and kept[0].read_text() == first
    with (folder / "metrics.csv").open() as f:
        steps = [int(row["step"]) for row in csv.DictReader(f) if row.get("train/loss")]
    with kept[0].open() as f:
        before = [int(row["step"]) for row in csv.DictReader(f) if row.get("train/loss")]
    assert before and steps and min(steps) > max(before)  # the first fit's rows kept, then the resumed fit's


def test_kept_logs_never_replace_each_other(tmp_path, monkeypatch):
    """Two resumes into one pinned folder within the same second keep both earlier logs."""
    fixed = time.struct_time((2026, 12, 7, 5, 0, 0, 0, 341, 0))
    monkeypatch.setattr(time, "gmtime", lambda *_: fixed)
    logger = Namespace(
        class_path="lightning.pytorch.loggers.CSVLogger",
        init_args=Namespace(save_dir=str(tmp_path), name="r", version=0),
    )
    folder = tmp_path / "r" / "version_0"
    folder.mkdir(parents=True)
    for text in ("first", "second"):
        (folder / "metrics.csv").write_text(text)
        keep_pinned_logs(Namespace(logger=[logger]))
    kept = {p.name: p.read_text() for p in folder.glob("metrics.until_*.csv")}
    assert kept == {"metrics.until_20261207T050000Z.csv": "first", "metrics.until_20261207T050000Z-2.csv": "second"}
    assert not (folder / "metrics.csv").exists()


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


# ---------------------------------------------------------------- 2. a resume never silently ignores a setting
def test_a_new_learning_rate_takes_effect_on_resume_and_is_recorded(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    schedule = ["--model.init_args.lr_scheduler=torch.optim.lr_scheduler.ExponentialLR"]
    schedule += ["--model.init_args.lr_scheduler.gamma=0.5"]
    fit("--model.init_args.optimizer.init_args.lr=0.001", *schedule)
    with pytest.warns(UserWarning, match=r"optimizer: \{.*'lr': 0\.001.*\} -> \{.*'lr': 0\.2.*\} \(optimizer\)"):
        resumed = fit(
            "--ckpt_path=last",
            "--trainer.max_epochs=2",
            "--model.init_args.optimizer.init_args.lr=0.2",
            *schedule,
        )
    # the restored schedule's progress (one step of 0.5) kept, on the new rate; then one more epoch's step
    assert resumed.trainer.optimizers[0].param_groups[0]["lr"] == pytest.approx(0.2 * 0.5**2)
    config = yaml.safe_load((Path(resumed.trainer.log_dir) / "config.yaml").read_text())
    assert config["model"]["init_args"]["optimizer"]["init_args"]["lr"] == 0.2  # the record and the run agree


def test_a_new_architecture_setting_stops_the_resume_with_one_message(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    first = fit()
    last = Path(first.trainer.log_dir) / "checkpoints" / "last.ckpt"
    args = ["fit", *RUN, f"--ckpt_path={last}", "--trainer.max_epochs=2", "--model.init_args.output_activation=sigmoid"]
    code, err = cli_exit(args, capsys)
    message = one_message(err, "fit")
    assert code == 1 and "output_activation: checkpoint 'identity', config 'sigmoid'" in message


# ---------------------------------------------------------------- 3. --ckpt_path last: the newest readable step
def test_resume_last_takes_the_newest_readable_step_whatever_its_name(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    first = fit()
    old_last = Path(first.trainer.log_dir) / "checkpoints" / "last.ckpt"
    newer = tmp_path / "runs" / "test" / "version_1" / "checkpoints"
    newer.mkdir(parents=True)
    checkpoint = torch.load(old_last, weights_only=True)
    checkpoint["global_step"] = 40
    torch.save(checkpoint, newer / "best-epoch=019-step=40.ckpt")
    (newer / "last.ckpt").write_bytes(old_last.read_bytes()[:300])  # the newest last.ckpt, cut short
    with pytest.warns(UserWarning, match="skipped unreadable checkpoint.*version_1.*last.ckpt"):
        found = find_last_checkpoint(tmp_path / "runs" / "test")
    assert Path(found).name == "best-epoch=019-step=40.ckpt"


def test_resume_last_with_no_readable_checkpoint_says_so(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    broken = tmp_path / "runs" / "test" / "version_0" / "checkpoints"
    broken.mkdir(parents=True)
    (broken / "last.ckpt").write_bytes(b"")
    (broken / "best-epoch=000-step=2.ckpt").write_bytes(b"PK\x03\x04 cut")
    code, err = cli_exit(["fit", *RUN, "--ckpt_path=last"], capsys)
    message = one_message(err, "fit")
    assert code == 1 and "none of the 2 checkpoint(s)" in message and "best-epoch=000-step=2.ckpt" in message


# ---------------------------------------------------------------- 4. a full disk (simulated) is one message
def test_a_full_disk_before_the_cache_build_is_one_message(tmp_path, monkeypatch, capsys):
    """Simulated: ``shutil.disk_usage`` reports 64 KB free."""
    monkeypatch.chdir(tmp_path)
    write_images(tmp_path / "images", 12)
    real = shutil.disk_usage
    monkeypatch.setattr(shutil, "disk_usage", lambda p: real(p)._replace(free=64 << 10))
    code, err = cli_exit(folder_run("images", "--data.init_args.cache_dir=cache"), capsys)
    message = one_message(err, "fit")
    assert code == 1 and "no space left for the decoded cache" in message and "needs" in message
    assert not [p for p in (tmp_path / "cache").rglob("*") if p.is_file()]  # no temporary left behind


def test_a_full_disk_during_the_cache_build_is_one_message_and_stops_the_decoding(tmp_path, monkeypatch):
    """Simulated: the writer of the cache's row list raises ENOSPC."""
    import numpy as np

    from betavae.data import cache
    from betavae.data.cache_keys import Source
    from betavae.errors import UnwritableFolderError

    def full(path, data):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(cache, "_write_atomic", full)
    closed = []

    def results():
        try:
            for i in range(3):
                yield i, np.zeros((1, 1, 4, 4), np.uint8), None
        finally:
            closed.append(True)

    sources = [Source(f"{i}.png", 1, 1) for i in range(3)]
    decoded = cache.DecodedCache(tmp_path / "c", sources, {"kind": "test"})
    with pytest.raises(UnwritableFolderError, match=r"no space left for the decoded cache in .*c: it needs"):
        decoded.write(results(), 3, (1, 4, 4))
    assert closed and not list((tmp_path / "c").iterdir())  # the partial image file is gone


@pytest.mark.slow  # a minute or more: the fast tier keeps to ~12 min on 2 cores; its parts are tested fast elsewhere
def test_a_full_disk_while_a_checkpoint_is_written_is_one_message(tmp_path, monkeypatch, capsys):
    """Simulated: torch's zip writer fails as it does on a full disk ("unexpected pos")."""
    monkeypatch.chdir(tmp_path)
    first = fit()
    last = Path(first.trainer.log_dir) / "checkpoints" / "last.ckpt"
    before = last.read_bytes()

    def full(obj, f, *args, **kwargs):
        f.write(b"PK\x03\x04 part of a checkpoint")
        raise RuntimeError("[enforce fail at inline_container.cc:664] . unexpected pos 4480 vs 4374")

    monkeypatch.setattr(torch, "save", full)
    code, err = cli_exit(["fit", *RUN, "--ckpt_path=last", "--trainer.max_epochs=2"], capsys)
    message = one_message(err, "fit")
    assert code == 1 and "could not write the checkpoint" in message and "the disk is full" in message
    assert last.read_bytes() == before and not list(last.parent.glob(".*"))
    with pytest.raises(CheckpointError, match="the previous last.ckpt is kept"):
        AtomicCheckpointIO().save_checkpoint({"state_dict": {}}, last)


# ---------------------------------------------------------------- 5. report: a bad evaluation record
def write_run(folder: Path, psnr: float, evaluation: str | None) -> Path:
    """A run folder as fit leaves it (config.yaml, metrics.csv), with ``evaluation/last.json`` if given."""
    folder.mkdir(parents=True)
    config = {
        "model": {"class_path": "betavae.models.BetaVAE", "init_args": {"beta": 4.0, "latent_dim": 4}},
        "data": {"class_path": "betavae.data.ShapesDataModule", "init_args": {}},
    }
    (folder / "config.yaml").write_text(yaml.safe_dump(config))
    (folder / "metrics.csv").write_text(f"epoch,step,val/psnr,val/ssim\n0,2,{psnr},0.5\n")
    if evaluation is not None:
        (folder / "evaluation").mkdir()
        (folder / "evaluation" / "last.json").write_text(evaluation)
    return folder


@pytest.mark.parametrize("content", ["", '{"dataset": "shapes", "ssim": 0.9, "psn'], ids=["empty", "truncated"])
def test_report_skips_a_bad_evaluation_record_names_it_and_finishes(content, tmp_path, capsys):
    from betavae.evaluation import report

    good = write_run(tmp_path / "exp" / "version_0", 20.0, None)
    bad = write_run(tmp_path / "exp" / "version_1", 25.0, content)
    files = report([tmp_path / "exp"], tmp_path / "report")
    text = files["markdown"].read_text()
    assert "Files skipped" in text and str(bad / "evaluation" / "last.json") in text
    assert "last.json unreadable" in text  # the fallback row says where its scores come from
    rows = [line for line in text.splitlines() if line.startswith("| shapes")]
    assert len(rows) == 2 and any("training log" in row and "unreadable" in row for row in rows)
    assert "version_0" in text and str(good.name) in capsys.readouterr().out


# ---------------------------------------------------------------- 6. evaluate --images: fit's rule for bad files
def test_evaluate_images_skips_counts_and_lists_a_broken_image(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    first = fit()
    ckpt = Path(first.trainer.log_dir) / "checkpoints" / "last.ckpt"
    photos = tmp_path / "photos"
    write_images(photos, 100, size=(8, 8), mode="L")  # 1 bad in 101: within max_bad_fraction 0.01
    (photos / "broken.png").write_bytes(b"\x89PNG half")
    no_fid = ["--fid.on_missing=warn", f"--fid.weights_path={tmp_path / 'absent.pth'}", "--disentanglement_preset=none"]
    with pytest.warns(UserWarning, match=r"1 of 101 image files .* could not be read .*broken.png"):
        main(["evaluate", f"--ckpt_path={ckpt}", f"--images={photos}", *no_fid])
    result = json.loads((ckpt.parent.parent / "evaluation" / "last__photos.json").read_text())
    assert result["n"] == 100 and result["images_skipped"] == 1
    assert "broken.png" in Path(result["images_skipped_list"]).read_text()


# ---------------------------------------------------------------- 7. a pickle that is not a checkpoint
class RunsCode:
    """Unpickling this touches a file: proof that a loader ran the pickle's code."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (self.marker,))


def not_a_checkpoint(kind: str, folder: Path, marker: Path) -> Path:
    path = folder / f"{kind}.ckpt"
    if kind == "dict_pickle":
        path.write_bytes(pickle.dumps({"state_dict": {"w": 1}}))
    elif kind == "tensor":
        torch.save(torch.zeros(3), path)
    elif kind == "protocol2_pickle":
        path.write_bytes(pickle.dumps({"a": 1}, protocol=2))
    elif kind == "code_pickle":
        path.write_bytes(pickle.dumps({"state_dict": {}, "x": RunsCode(marker)}))
    else:  # a torch.save zip whose pickle runs code
        torch.save({"state_dict": {}, "x": RunsCode(marker)}, path)
    return path


KINDS = ["dict_pickle", "tensor", "protocol2_pickle", "code_pickle", "code_in_torch_zip"]


@pytest.mark.parametrize("command", ["fit", "evaluate"])
@pytest.mark.parametrize("kind", KINDS)
def test_a_pickle_that_is_not_a_checkpoint_is_one_message_and_never_runs(kind, command, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    marker = tmp_path / "code_ran"
    path = not_a_checkpoint(kind, tmp_path, marker)
    code, err = cli_exit([command, *RUN, f"--ckpt_path={path}"], capsys)
    message = one_message(err, command)
    assert code == 1 and f"{path} is not a" in message and "weights_only" not in message.replace("weights-only", "")
    assert "weights_only=False" not in err and "--weights_only" not in err
    assert not marker.exists()


def test_lightnings_own_loading_is_weights_only(tmp_path):
    marker = tmp_path / "code_ran"
    path = not_a_checkpoint("code_in_torch_zip", tmp_path, marker)
    with pytest.raises(CheckpointError, match="not a Lightning checkpoint"):
        AtomicCheckpointIO().load_checkpoint(path)  # what fit --ckpt_path and SLURM's requeue go through
    assert not marker.exists()


# ---------------------------------------------------------------- 9. a config file whose top level is not a mapping
@pytest.mark.parametrize(("content", "says"), [("", "is empty"), ("- model\n- data\n", "holds a list")])
def test_a_config_file_that_is_not_a_mapping_is_named(content, says, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "bad.yaml").write_text(content)
    code, err = cli_exit(["fit", "--config", str(tmp_path / "bad.yaml"), *RUN], capsys)
    message = one_message(err, "fit")
    assert code == 1 and f"config file {tmp_path / 'bad.yaml'} {says}" in message and "top level must be" in message


# ---------------------------------------------------------------- 10. a missing checkpoint is named first
@pytest.mark.parametrize("command", ["evaluate", "traverse"])
def test_a_missing_checkpoint_is_named_before_its_config(command, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    code, err = cli_exit([command, "--ckpt_path=runs/x/version_0/checkpoints/last.ckpt"], capsys)
    message = one_message(err, command)
    assert code == 1 and "checkpoint runs/x/version_0/checkpoints/last.ckpt does not exist" in message
    assert "config.yaml" not in message


# ---------------------------------------------------------------- 11. the list of bad images outlives the failed run
def test_too_many_bad_images_point_to_a_list_that_exists(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    write_images(tmp_path / "images", 12)
    broken = write_broken_images(tmp_path / "images")
    code, err = cli_exit(folder_run("images"), capsys)
    message = one_message(err, "fit")
    listed = Path(message.split("The full list is in ", 1)[1].split(" ", 1)[0].rstrip("."))
    assert code == 1 and listed.is_file()
    assert sorted(line.split("\t")[0] for line in listed.read_text().splitlines()) == sorted(map(str, broken))


# ---------------------------------------------------------------- 12. a subfolder that cannot be listed
def test_an_unreadable_subfolder_is_counted_and_named(tmp_path, monkeypatch):
    """``chmod 000`` of a subfolder; as root (who reads it anyway) simulated with ``os.scandir`` refusing it."""
    from betavae.data import ImageFolderDataModule

    write_images(tmp_path / "images", 30)
    locked = tmp_path / "images" / "locked"
    write_images(locked, 2)
    locked.chmod(0)
    real = os.scandir

    def scandir(path="."):
        if Path(path) == locked:
            raise PermissionError(errno.EACCES, "Permission denied", str(path))
        return real(path)

    monkeypatch.setattr(os, "scandir", scandir)
    dm = ImageFolderDataModule(root=str(tmp_path / "images"), image_size=16, batch_size=4, max_bad_fraction=0.1)
    try:
        with pytest.warns(UserWarning, match=r"1 of 31 image files .* could not be read.*locked/ \(PermissionError"):
            dm.setup("fit")
    finally:
        locked.chmod(0o755)

"""Checkpoint files that survive kills: atomic writes, a ``last.ckpt`` every epoch, and readable resumes.

- :class:`AtomicCheckpointIO` writes every checkpoint (``last.ckpt``, the best, SLURM's ``hpc_ckpt_N``) to a
  temporary file in the target folder and renames it into place, so a kill at any moment leaves either the
  old file or the new one, never a truncated one (Lightning's own write goes through a temporary file in
  the system's temp folder, which on a cluster is often another filesystem, where the final move is a copy).
- :class:`RunCheckpoint` is Lightning's ``ModelCheckpoint`` for the best checkpoints, plus a ``last.ckpt``
  written at the end of every training epoch and at the end of fit whatever the monitored metric does, and
  on SIGTERM or Ctrl-C (with the command that resumes the run).
- :func:`check_checkpoint` says why a path is not a readable checkpoint (missing, empty, not a PyTorch file,
  truncated); :func:`check_fits` names both shapes when a checkpoint does not fit the model;
  :func:`find_last_checkpoint` takes the readable checkpoint with the largest stored global step of an experiment,
  skipping broken ones. Every load is weights-only (:data:`WEIGHTS_ONLY_NOTE`), Lightning's own included.
"""

from __future__ import annotations

import errno
import os
import pickle
import shlex
import socket
import sys
import zipfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

import lightning as L
import torch
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.plugins.io import TorchCheckpointIO
from lightning.pytorch.utilities import rank_zero_warn
from lightning.pytorch.utilities.exceptions import SIGTERMException

from betavae.errors import CheckpointError, MissingFileError
from betavae.processes import process_alive

TEMP_SUFFIX = ".tmp"
#: how the legacy (pre-1.6, non-zip) ``torch.save`` format begins: a protocol-2 pickle of its magic number
LEGACY_TORCH_HEAD = b"\x80\x02\x8a\nl\xfc\x9cF\xf9 j\xa8P\x19."
#: what every refused file is told: betavae unpickles nothing but tensors and plain values
WEIGHTS_ONLY_NOTE = "betavae loads checkpoints weights-only: it never unpickles other objects, which could run code"
#: hyperparameters that decide the shapes of a model's weights, and where a config sets them
SHAPE_SETTINGS = {
    "in_channels": "data.init_args.channels",
    "image_size": "data.init_args.image_size",
    "latent_dim": "model.init_args.latent_dim",
    "encoder": "model.init_args.encoder",
    "decoder": "model.init_args.decoder",
    "num_classes": "model.init_args.num_classes",
}


# --------------------------------------------------------------------------- writing
def temporary_path(path: Path) -> Path:
    """Where ``path`` is written before it is renamed into place: a hidden file in the same folder,
    named with this host and process so that an abandoned one can be recognised."""
    return path.with_name(f".{path.name}.{socket.gethostname()}.{os.getpid()}{TEMP_SUFFIX}")


def remove_abandoned_temporaries(folder: Path) -> list[Path]:
    """Delete the temporary checkpoint files under ``folder`` left by processes of this host that are gone
    (killed mid-write); returns them."""
    host, removed = socket.gethostname(), []
    for path in Path(folder).glob(f"**/.*.ckpt.{host}.*{TEMP_SUFFIX}"):
        pid = path.name[: -len(TEMP_SUFFIX)].rsplit(".", 1)[-1]
        if pid.isdigit() and not process_alive(int(pid)):
            path.unlink(missing_ok=True)
            removed.append(path)
    return removed


class AtomicCheckpointIO(TorchCheckpointIO):
    """``TorchCheckpointIO`` that writes local checkpoints atomically: to a temporary file in the target
    folder (flushed to disk), then renamed over the target. A failed write removes its temporary file
    and leaves the previous checkpoint untouched. Remote paths (``s3://…``) use Lightning's own writer."""

    def save_checkpoint(self, checkpoint: dict[str, Any], path: Any, storage_options: Any | None = None) -> None:
        if storage_options is not None or "://" in str(path):
            super().save_checkpoint(checkpoint, path, storage_options)
            return
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        remove_abandoned_temporaries(path.parent)
        tmp = temporary_path(path)
        try:
            with tmp.open("wb") as f:
                torch.save(checkpoint, f)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, path)
        except (OSError, RuntimeError) as err:  # torch's writer reports a full disk as "unexpected pos"
            raise CheckpointError(write_failure(path, err)) from None
        finally:
            tmp.unlink(missing_ok=True)

    def load_checkpoint(
        self, path: Any, map_location: Any | None = None, weights_only: bool | None = None
    ) -> dict[str, Any]:
        """Lightning's loading (``fit --ckpt_path``, SLURM's requeue), weights-only unless the caller says
        ``weights_only=False`` in so many words: a pickle that would run code is refused, never run, with
        ``load_checkpoint``'s one message."""
        if "://" in str(path):
            return super().load_checkpoint(path, map_location, weights_only=weights_only is not False)
        return load_checkpoint(path, weights_only=weights_only is not False)


def write_failure(path: Path, err: BaseException) -> str:
    """The message of a checkpoint write that failed: where, why, the space left, and that the old file stays."""
    import shutil

    try:
        free = f"{shutil.disk_usage(path.parent).free / 2**20:.0f} MB free"
    except OSError:
        free = "free space unknown"
    why = os.strerror(err.errno) if isinstance(err, OSError) and err.errno else str(err).strip().splitlines()[-1]
    full = isinstance(err, OSError) and err.errno in (errno.ENOSPC, errno.EDQUOT) or "unexpected pos" in why
    cause = "the disk is full (or over quota)" if full else why
    kept = f"the previous {path.name} is kept" if path.exists() else "nothing was written"
    return (
        f"could not write the checkpoint {path}: {cause} ({free} in {path.parent}); {kept}. Free space there, or "
        "write checkpoints elsewhere (--checkpoint.dirpath DIR), then resume with --ckpt_path last."
    )


# --------------------------------------------------------------------------- reading
def checkpoint_problem(path: str | Path) -> str | None:
    """Why ``path`` is not a readable checkpoint file, or ``None`` when it is one.

    Checks what can be checked without unpickling anything: the file exists and is not empty, it is a
    PyTorch zip archive (or the legacy pickle format) and every member passes its CRC check (a file cut
    short by a kill fails here).
    """
    path = Path(path).expanduser()
    if not path.exists():
        return "it does not exist"
    if path.is_dir():
        return "it is a folder, not a checkpoint file"
    size = path.stat().st_size
    if size == 0:
        return "it is empty (0 bytes): a write that was interrupted, or a copy that failed"
    with path.open("rb") as f:
        head = f.read(len(LEGACY_TORCH_HEAD))
    if not zipfile.is_zipfile(path):
        if head.startswith(LEGACY_TORCH_HEAD):  # the legacy (pre-1.6) torch.save format
            return None
        if head[:1] == b"\x80":  # a pickle stream (protocol 2+) that torch.save did not write
            return f"it is a plain Python pickle (protocol {head[1]}), not a PyTorch checkpoint file"
        head = head[:4]
        kind = "a zip archive cut short (truncated)" if head == b"PK\x03\x04" else "not a PyTorch checkpoint"
        return f"it is {kind} ({size} bytes, starting with {head!r})"
    try:
        with zipfile.ZipFile(path) as archive:
            names = archive.namelist()
            if not any(name.endswith("data.pkl") for name in names):
                return "it is a zip archive but not a PyTorch checkpoint (no data.pkl inside)"
            bad = archive.testzip()
    except (zipfile.BadZipFile, OSError, EOFError) as err:
        return f"it is truncated or corrupt ({type(err).__name__}: {err})"
    if bad is not None:
        return f"it is corrupt: {bad} inside fails its CRC check"
    return None


def check_checkpoint(path: str | Path) -> Path:
    """``path`` if it is a readable checkpoint file.

    Raises:
        MissingFileError: nothing is there.
        CheckpointError: something is there but is not a readable checkpoint; the message says why.
    """
    path = Path(path).expanduser()
    problem = checkpoint_problem(path)
    if problem == "it does not exist":
        raise MissingFileError(f"checkpoint {path} does not exist")
    if problem is not None:
        raise CheckpointError(
            f"{path} is not a readable checkpoint: {problem}. Pass a checkpoint written by betavae or Lightning "
            "(runs/<experiment>/version_N/checkpoints/last.ckpt), or --ckpt_path last to resume from the newest "
            "readable one."
        )
    return path


def load_checkpoint(path: str | Path, weights_only: bool = True) -> dict[str, Any]:
    """The checkpoint dict of a checked file (``check_checkpoint``), loaded on the CPU.

    ``weights_only=False`` lets ``torch.load`` unpickle arbitrary objects: for trusted files only, and only
    when a caller asks for it in so many words (no message ever advises it).

    Raises:
        CheckpointError: the file is not readable, is a pickle of something else than a checkpoint, or holds
            objects ``weights_only`` refuses; one message for each, without unpickling code.
    """
    path = check_checkpoint(path)
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=weights_only, mmap=zipfile.is_zipfile(path))
    except pickle.UnpicklingError as err:
        refused = [line.strip() for line in str(err).splitlines() if "GLOBAL" in line or "operand" in line.lower()]
        why = f" ({refused[0]})" if refused else ""
        raise CheckpointError(
            f"{path} is not a Lightning checkpoint: it holds Python objects other than tensors and plain values"
            f"{why}. {WEIGHTS_ONLY_NOTE}. Pass a checkpoint written by betavae or Lightning."
        ) from None
    except (RuntimeError, EOFError, OSError, ValueError) as err:
        why = str(err).strip().splitlines()[0] if str(err).strip() else ""
        raise CheckpointError(f"{path} is not a readable checkpoint: {type(err).__name__}: {why}") from None
    if not isinstance(checkpoint, Mapping) or "state_dict" not in checkpoint:
        held = (
            f"a dict of {sorted(map(str, checkpoint))[:8]}"
            if isinstance(checkpoint, Mapping)
            else "a " + type(checkpoint).__name__
        )
        raise CheckpointError(
            f"{path} is not a Lightning checkpoint: it holds {held}, not a checkpoint with a state_dict. "
            "Pass a checkpoint written by betavae or Lightning (runs/<experiment>/version_N/checkpoints/last.ckpt)."
        )
    return dict(checkpoint)


def check_fits(model: torch.nn.Module, checkpoint: Mapping[str, Any], path: str | Path) -> None:
    """Raise a ``CheckpointError`` naming both shapes when ``checkpoint``'s weights do not fit ``model``.

    The message lists the differing weights (checkpoint shape, model shape) and the shape-deciding
    hyperparameters (channels, image size, latent size, ...) of the checkpoint beside the model's, with the
    config key that sets each.
    """
    theirs = checkpoint.get("state_dict", {})
    ours = model.state_dict()
    differ = [
        (k, tuple(v.shape), tuple(ours[k].shape))
        for k, v in theirs.items()
        if k in ours and hasattr(v, "shape") and tuple(v.shape) != tuple(ours[k].shape)
    ]
    missing = sorted(ours.keys() - theirs.keys())
    extra = sorted(theirs.keys() - ours.keys())
    if not differ and not missing and not extra:
        return
    parts = []
    if differ:
        shown = "; ".join(f"{k}: checkpoint {a}, model {b}" for k, a, b in differ[:3])
        parts.append(f"{len(differ)} weight(s) differ in shape, e.g. {shown}")
    if missing or extra:
        parts.append(
            f"{len(missing)} weight(s) of the model are not in the checkpoint (e.g. {', '.join(missing[:3]) or '-'}) "
            f"and {len(extra)} of the checkpoint not in the model (e.g. {', '.join(extra[:3]) or '-'})"
        )
    hparams = checkpoint.get("hyper_parameters") or {}
    model_hparams = dict(getattr(model, "hparams", {}) or {})
    settings = [
        f"{name}: checkpoint {hparams[name]!r}, config {model_hparams.get(name)!r} (set by {key})"
        for name, key in SHAPE_SETTINGS.items()
        if name in hparams and hparams.get(name) != model_hparams.get(name)
    ]
    raise CheckpointError(
        f"{path} does not fit the {type(model).__name__} built from the config: "
        + "; ".join(parts)
        + (". Settings that differ: " + "; ".join(settings) if settings else "")
        + ". Use the config the checkpoint was trained with (its run's config.yaml), or change those settings."
    )


def resume_problem(path: Path) -> str | int:
    """The global step stored in checkpoint ``path``, or why it cannot resume a run (unreadable, not a
    checkpoint, weights only). Loads weights-only and memory-mapped: cheap, and never runs code."""
    problem = checkpoint_problem(path)
    if problem is not None:
        return problem
    try:
        checkpoint = load_checkpoint(path)
    except CheckpointError as err:
        return str(err).split(": ", 1)[-1]
    if "optimizer_states" not in checkpoint:
        return "it holds weights only (save_weights_only): it cannot resume a run"
    return int(checkpoint.get("global_step") or 0)


def find_last_checkpoint(root: str | Path) -> str | None:
    """The newest readable checkpoint under ``root`` (an experiment folder of ``version_*`` runs): the one with
    the largest stored global step, whatever its name (``last.ckpt``, a best one, ``-v1``), ``last`` first on
    a tie, then the most recent file; ``None`` when there is no checkpoint at all.

    Unreadable candidates (empty, truncated, not a checkpoint, weights only) are skipped with one warning
    naming each; abandoned temporary files of killed writes are removed.

    Raises:
        CheckpointError: checkpoints are there but none can resume the run (each named with why): the run
            stops rather than start from scratch without a word.
    """
    root = Path(root)
    if not root.is_dir():
        return None
    remove_abandoned_temporaries(root)
    found = []
    skipped = []
    for candidate in sorted(p for p in root.glob("**/*.ckpt") if p.is_file()):
        step = resume_problem(candidate)
        if isinstance(step, str):
            skipped.append((candidate, step))
        else:
            found.append(((step, candidate.name.startswith("last"), candidate.stat().st_mtime), candidate))
    listed = "; ".join(f"{p} ({why})" for p, why in skipped)
    if not found:
        if skipped:
            raise CheckpointError(
                f"--ckpt_path last: none of the {len(skipped)} checkpoint(s) under {root} can resume the run: "
                f"{listed}. "
                "Pass a checkpoint with --ckpt_path FILE, or leave --ckpt_path out to start a new run from scratch."
            )
        return None
    (step, _, _), newest = max(found, key=lambda item: item[0])
    if skipped:
        rank_zero_warn(
            f"--ckpt_path last: skipped unreadable checkpoint(s): {listed}. Resuming from {newest} (global step "
            f"{step}) instead."
        )
    return str(newest)


# --------------------------------------------------------------------------- the run's checkpoints
def resume_command(path: str | Path, argv: list[str] | None = None) -> str:
    """The command line that resumes this run from ``path``: this process's arguments with
    ``--ckpt_path`` replaced."""
    args = list(sys.argv[1:] if argv is None else argv)
    kept, skip = [], False
    for arg in args:
        if skip:
            skip = False
            continue
        if arg == "--ckpt_path":
            skip = True
            continue
        if not arg.startswith("--ckpt_path="):
            kept.append(arg)
    return shlex.join(["python", "-m", "betavae", *kept, "--ckpt_path", str(path)])


class RunCheckpoint(ModelCheckpoint):
    """Lightning's ``ModelCheckpoint`` (the best ``save_top_k`` checkpoints by ``monitor``) with a
    ``last.ckpt`` that always holds the newest state.

    ``last.ckpt`` is rewritten at the end of every training epoch and at the end of fit, whatever the
    monitored metric does (Lightning's own ``save_last`` writes it only together with a top-k checkpoint),
    and when the run is stopped by SIGTERM (``kill``, schedulers, containers) or Ctrl-C, in which case the
    command that resumes it is printed. It is not written when the run stops on an error (a NaN loss):
    the last good one stays.

    Args:
        dirpath: Folder of the checkpoints; default: ``checkpoints/`` of the run directory.
        filename: Name pattern of the best checkpoints, e.g. ``best-epoch={epoch:03d}-step={step}``.
        monitor: Metric that ranks the best checkpoints, e.g. ``val/loss``; ``None`` keeps the newest.
        verbose: Log each save.
        save_last: Keep ``last.ckpt`` as described above.
        save_top_k: How many best checkpoints to keep (0: none, -1: all).
        save_on_exception: Lightning's: also save a checkpoint named like the best ones when the run stops on
            any exception, a NaN loss included (off by default; ``last.ckpt`` keeps the last good state either
            way). Accepted too so that run configs written with Lightning's ``ModelCheckpoint`` still load.
        save_weights_only: Save only the weights (no optimizer state: such a checkpoint cannot resume).
        mode: ``min`` or ``max``: whether a lower or a higher ``monitor`` is better.
        auto_insert_metric_name: Insert ``name=`` before each metric in ``filename``.
        every_n_train_steps: Also rank the best every N training steps.
        train_time_interval: Also rank the best every interval of training time.
        every_n_epochs: Rank the best every N epochs.
        save_on_train_epoch_end: Rank at the end of the training epoch instead of after validation.
        enable_version_counter: Add ``-v1``, ``-v2`` to names that exist already.
    """

    def __init__(
        self,
        dirpath: str | None = None,
        filename: str | None = None,
        monitor: str | None = None,
        verbose: bool = False,
        save_last: bool = True,
        save_top_k: int = 1,
        save_on_exception: bool = False,
        save_weights_only: bool = False,
        mode: Literal["min", "max"] = "min",
        auto_insert_metric_name: bool = True,
        every_n_train_steps: int | None = None,
        train_time_interval: Any | None = None,
        every_n_epochs: int | None = None,
        save_on_train_epoch_end: bool | None = None,
        enable_version_counter: bool = True,
    ) -> None:
        super().__init__(
            dirpath=dirpath,
            filename=filename,
            monitor=monitor,
            verbose=verbose,
            save_last=False,  # written here, every epoch (see the class docstring)
            save_top_k=save_top_k,
            save_on_exception=save_on_exception,
            save_weights_only=save_weights_only,
            mode=mode,
            auto_insert_metric_name=auto_insert_metric_name,
            every_n_train_steps=every_n_train_steps,
            train_time_interval=train_time_interval,
            every_n_epochs=every_n_epochs,
            save_on_train_epoch_end=save_on_train_epoch_end,
            enable_version_counter=enable_version_counter,
        )
        self.keep_last = save_last
        self.last_saved_step: int | None = None

    @property
    def last_path(self) -> Path | None:
        """Where ``last.ckpt`` goes (known once the trainer has set the folder up)."""
        return Path(self.dirpath) / f"{self.CHECKPOINT_NAME_LAST}{self.FILE_EXTENSION}" if self.dirpath else None

    def save_last_now(self, trainer: L.Trainer) -> Path | None:
        """Write ``last.ckpt`` now (on every process: saving is a collective); ``None`` when there is
        nothing new to write (no ``save_last``, not fitting, a ``fast_dev_run``, already saved at this step)."""
        if (
            not self.keep_last
            or self.last_path is None
            or trainer.fast_dev_run
            or trainer.sanity_checking
            or trainer.state.fn != "fit"
            or self.last_saved_step == trainer.global_step
        ):
            return None
        trainer.save_checkpoint(self.last_path, self.save_weights_only)
        self.last_model_path = str(self.last_path)
        self.last_saved_step = trainer.global_step
        return self.last_path

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        super().on_train_epoch_end(trainer, pl_module)
        self.save_last_now(trainer)

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        super().on_train_end(trainer, pl_module)
        self.save_last_now(trainer)  # e.g. max_steps reached within an epoch

    def on_exception(self, trainer: L.Trainer, pl_module: L.LightningModule, exception: BaseException) -> None:
        super().on_exception(trainer, pl_module, exception)
        if not isinstance(exception, (SIGTERMException, KeyboardInterrupt)) or trainer.state.fn != "fit":
            return
        why = "SIGTERM" if isinstance(exception, SIGTERMException) else "Ctrl-C"
        saved = self.save_last_now(trainer) or (Path(self.last_model_path) if self.last_model_path else None)
        if trainer.is_global_zero:
            where = (
                f"saved {saved} (epoch {trainer.current_epoch}, global step {trainer.global_step})"
                if saved
                else "no checkpoint could be saved"
            )
            resume = f"\nResume with:\n  {resume_command(saved)}" if saved else ""
            print(f"Stopped by {why}; {where}.{resume}", file=sys.stderr, flush=True)

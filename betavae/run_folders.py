"""A run's folders: a checkpoint's run folder, a trainer's, and the folders a run creates (removed again when
it fails before it starts). Shared by the CLI, the callbacks, W&B tracking, ``evaluate`` and ``report``.
"""

from __future__ import annotations

import weakref
from pathlib import Path

import lightning as L

_RUN_DIRS: weakref.WeakKeyDictionary[L.Trainer, Path] = weakref.WeakKeyDictionary()


def run_dir_of(ckpt_path: str | Path) -> Path:
    """The run folder of a checkpoint: the parent of its ``checkpoints/`` folder (else its own folder)."""
    folder = Path(ckpt_path).expanduser().resolve().parent
    return folder.parent if folder.name == "checkpoints" else folder


def trainer_run_dir(trainer: L.Trainer) -> Path:
    """The run folder of ``trainer``: its first logger's versioned folder, else its ``default_root_dir``.

    ``trainer.log_dir`` is a collective under DDP (rank zero broadcasts its folder), so the first call must
    happen on every process, e.g. in a callback's ``setup``; later calls, on any rank alone, get the
    remembered folder.
    """
    if trainer not in _RUN_DIRS:
        _RUN_DIRS[trainer] = Path(trainer.log_dir or trainer.default_root_dir)
    return _RUN_DIRS[trainer]


class NewRunFolders:
    """The folders a run is about to create, remembered before it starts: its run directory (``version_N``),
    the experiment and save folders above it, and W&B's folder, where they do not exist yet.

    ``discard()``, for a run that failed before it started, finishes its W&B run and removes the new run
    directory, this run's W&B run folder (``wandb/*-run-*-<id>``; the whole ``wandb/`` folder when the run
    created it), then every other new folder that is left empty (never one another run has put files in),
    so that the run leaves nothing behind: no empty ``version_N``, no offline W&B run. ``created``: folders
    this run made before its trainer existed (its claimed ``version_N``, ``betavae.versions``), new as well.
    """

    def __init__(self, trainer: L.Trainer, created: list[Path] | tuple[Path, ...] = ()) -> None:
        from lightning.pytorch.loggers import WandbLogger

        self.acts = trainer.is_global_zero  # only rank zero removes anything
        self.run_dir = Path(trainer.log_dir or trainer.default_root_dir).expanduser().resolve()
        created_here = {Path(p).expanduser().resolve() for p in created}
        self.run_dir_is_new = not self.run_dir.exists() or self.run_dir in created_here
        others = [Path(trainer.default_root_dir)]
        self.wandb_runs: list[tuple[Path, str | None, bool]] = []  # (wandb/ folder, run id, whether it is new)
        for logger in trainer.loggers:
            if isinstance(logger, WandbLogger):
                save_dir = Path(logger.save_dir or ".")
                folder = (save_dir / "wandb").expanduser().resolve()
                self.wandb_runs.append((folder, logger.version, not folder.exists()))
                others.append(save_dir)
            else:
                others += [Path(v) for v in (getattr(logger, "save_dir", None), getattr(logger, "root_dir", None)) if v]
        resolved = {p.expanduser().resolve() for p in others}
        new = {p for p in resolved if not p.exists()} | (created_here - {self.run_dir})
        self.new_parents = sorted(new, key=lambda p: len(p.parts), reverse=True)

    def discard(self) -> None:
        """Finish this process's W&B run and remove what the run created (see the class docstring)."""
        import shutil

        import wandb

        if not self.acts:
            return
        if wandb.run is not None:
            wandb.finish(exit_code=1)
        for folder, run_id, is_new in self.wandb_runs:
            if is_new:
                shutil.rmtree(folder, ignore_errors=True)
                continue
            for run_folder in folder.glob(f"*-run-*-{run_id}") if run_id else []:
                shutil.rmtree(run_folder, ignore_errors=True)
            latest = folder / "latest-run"
            if latest.is_symlink() and not latest.exists():
                latest.unlink()
        if self.run_dir_is_new:
            shutil.rmtree(self.run_dir, ignore_errors=True)
        for folder in self.new_parents:  # deepest first; only when nothing else is inside
            if folder.is_dir() and not any(folder.iterdir()):
                folder.rmdir()

"""Run folders claimed atomically: two runs started at the same moment never share ``version_N``.

Lightning's ``CSVLogger`` and ``TensorBoardLogger`` pick ``version_N`` by listing the experiment folder and
create it only when they first write, seconds or minutes later; runs started together (a SLURM array, a sweep
agent, two shells) see the same listing, pick the same number and then write into one folder: interleaved
``metrics.csv`` rows, colliding checkpoints, one ``wandb_id`` for two runs.

``claim_version`` creates the folder itself with ``mkdir`` (which fails if the folder exists, atomically, on
local filesystems and on NFS alike) and moves on to the next number when another run was faster;
``claim_logger_versions`` gives every CSV/TensorBoard logger of a parsed config the version it claimed,
through the loggers' own ``version`` argument. Only the launching process (global rank zero) claims: the
other ranks of a DDP run receive rank zero's folder from Lightning.

A logger given its ``version`` logs into that folder again (a resumed study run does). Lightning's ``CSVLogger``
then deletes the folder's ``metrics.csv`` when it starts; ``keep_pinned_logs`` moves the file aside first, to
``metrics.until_<UTC time>.csv``, so a resume never loses the training log so far.
"""

from __future__ import annotations

import os
import re
import time
from collections.abc import Iterator
from pathlib import Path

from jsonargparse import Namespace

from betavae.errors import UnwritableFolderError

#: the loggers whose ``version`` argument picks a ``save_dir/name/version_N`` folder
VERSIONED_LOGGERS = ("CSVLogger", "TensorBoardLogger")
#: environment variables by which launchers (torchrun, SLURM's srun, Lightning's own) give a process its rank
RANK_VARIABLES = ("RANK", "SLURM_PROCID", "NODE_RANK", "GROUP_RANK", "LOCAL_RANK")
_VERSION = re.compile(r"version_(\d+)$")


def file_in_the_way(folder: str | Path) -> Path | None:
    """The file that stands where ``folder`` or one of its parents should be a folder, or ``None``."""
    folder = Path(folder).expanduser().absolute()
    for path in (folder, *folder.parents):
        if path.exists():
            return None if path.is_dir() else path
    return None


def launched_rank() -> int:
    """This process's rank as its launcher set it (0 when none did): non-zero for every process of a
    multi-process run but the first, before the trainer exists."""
    for name in RANK_VARIABLES:
        value = os.environ.get(name, "").strip()
        if value.isdigit() and int(value) != 0:
            return int(value)
    return 0


def next_version(root: Path) -> int:
    """Lightning's rule: one more than the largest ``version_N`` under ``root`` (0 when there is none)."""
    numbers = [int(m.group(1)) for p in root.iterdir() if (m := _VERSION.match(p.name))] if root.is_dir() else []
    return max(numbers, default=-1) + 1


def claim_version(root: str | Path, attempts: int = 1000) -> tuple[int, list[Path]]:
    """Create the next free ``root/version_N`` and return ``N`` with the folders this call created
    (``root`` and its parents where they were new, then ``version_N``).

    Raises:
        UnwritableFolderError: a file stands where ``root`` or a folder above it should be, or no folder can be
            created there (permissions, a full disk); the message names the path and the settings.
    """
    root = Path(root).expanduser()
    created = [p for p in (root, *root.parents) if not p.exists()][::-1]
    try:
        if blocking := file_in_the_way(root):
            raise NotADirectoryError(f"{blocking} is a file, not a folder")
        root.mkdir(parents=True, exist_ok=True)
        version = next_version(root)
        for _ in range(attempts):
            folder = root / f"version_{version}"
            try:
                folder.mkdir()
            except FileExistsError:  # another run was faster: the next number
                version += 1
                continue
            return version, [*created, folder]
        raise FileExistsError(f"{attempts} version folders in a row were taken")
    except OSError as err:
        raise UnwritableFolderError(
            f"cannot create the run folder under {root}: {err.strerror or err}. Choose another folder with "
            "--trainer.logger.init_args.save_dir (and --trainer.default_root_dir), or move what is in the way."
        ) from None


def versioned_loggers(
    trainer_config: Namespace, kinds: tuple[str, ...] = VERSIONED_LOGGERS
) -> Iterator[tuple[Namespace, Path]]:
    """Each logger entry of ``trainer_config`` whose class is one of ``kinds``: ``(init_args, save_dir/name)``.
    An entry without ``init_args`` gets an empty one, so that a version can be set on it."""
    loggers = trainer_config.get("logger")
    for entry in loggers if isinstance(loggers, list) else [loggers]:
        if not isinstance(entry, Namespace) or str(entry.get("class_path", "")).rsplit(".", 1)[-1] not in kinds:
            continue
        if entry.get("init_args") is None:
            entry.init_args = Namespace()
        name = entry.init_args.get("name", "lightning_logs")
        yield entry.init_args, Path(entry.init_args.get("save_dir") or ".") / (name if name else "")


def claim_logger_versions(trainer_config: Namespace) -> list[Path]:
    """Give each CSV/TensorBoard logger of ``trainer_config`` without a ``version`` the number of a folder
    claimed for it (loggers sharing ``save_dir/name`` share one); returns the folders created.

    Does nothing on a process whose launcher gave it a non-zero rank (``launched_rank``).
    """
    if launched_rank() != 0:
        return []
    created: list[Path] = []
    claimed: dict[Path, int] = {}
    for init, root in versioned_loggers(trainer_config):
        if init.get("version") is not None:  # the user chose the folder
            continue
        key = root.expanduser().resolve()
        if key not in claimed:
            claimed[key], folders = claim_version(root)
            created += folders
        init.version = claimed[key]
    return created


def keep_pinned_logs(trainer_config: Namespace) -> list[tuple[Path, Path]]:
    """Move the ``metrics.csv`` of each CSVLogger that was given its ``version`` (and so logs into a folder that
    may hold an earlier run's log) to ``metrics.until_<UTC time>.csv`` beside it, before the logger deletes it.

    Returns:
        ``(metrics.csv, where it was moved)`` for each file moved; nothing on a process of non-zero rank.
    """
    if launched_rank() != 0:
        return []
    moved: list[tuple[Path, Path]] = []
    for init, root in versioned_loggers(trainer_config, ("CSVLogger",)):
        version = init.get("version")
        if version is None:  # a claimed, new folder: nothing to keep
            continue
        log = root / (version if isinstance(version, str) else f"version_{version}") / "metrics.csv"
        if log.is_file():
            stamp, n = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime()), 1
            kept = log.with_name(f"metrics.until_{stamp}.csv")
            while kept.exists():  # resumed twice within a second: never replace a kept log
                n += 1
                kept = log.with_name(f"metrics.until_{stamp}-{n}.csv")
            os.replace(log, kept)
            moved.append((log, kept))
    return moved


def check_run_root(default_root_dir: str | Path | None) -> None:
    """Stop with one message when a file stands where the trainer's ``default_root_dir`` should be a folder.

    Raises:
        UnwritableFolderError: naming the file and the setting.
    """
    if default_root_dir and (blocking := file_in_the_way(default_root_dir)):
        raise UnwritableFolderError(
            f"cannot use {default_root_dir} as the runs folder: {blocking} is a file, not a folder. Choose another "
            "folder with --trainer.default_root_dir, or move the file away."
        )

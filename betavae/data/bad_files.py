"""Unreadable source images: one rule for ``fit`` (the decoded cache) and ``evaluate --images``: skip them,
count them, list them, and stop when there are more than ``max_bad_fraction`` of them.

A broken file of any kind (corrupt, truncated, not an image, no permission) is caught by ``try_decode``; a
subfolder that cannot be listed is counted like one (``betavae.data.folder.walk_files``). The list is kept where
it outlives a failed run (beside the decoded cache, or in ``evaluate``'s output folder).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from lightning.pytorch.utilities import rank_zero_warn

from betavae.errors import BetaVAEError
from betavae.run_folders import trainer_run_dir

if TYPE_CHECKING:
    from betavae.data.cache import CacheEntry


class BadImagesError(BetaVAEError, RuntimeError):
    """Too many source images could not be read."""


def check_bad_files(
    entry: CacheEntry,
    root: Path,
    max_bad_fraction: float,
    trainer: Any = None,
    unreadable: Sequence[tuple[str, str]] = (),
) -> Path | None:
    """``skip_bad_files`` for the files a cache skipped, with the subfolders that could not be listed
    (``unreadable``); the full list is kept beside the cache (its ``bad_files-<key>.txt``, absolute paths)."""
    keep = entry.bad_list_path
    return skip_bad_files(
        [*entry.bad, *unreadable], len(entry.sources) + len(unreadable), root, max_bad_fraction, keep, trainer
    )


def skip_bad_files(
    bad: Sequence[tuple[str, str]],
    total: int,
    root: Path,
    max_bad_fraction: float,
    keep: Path,
    trainer: Any = None,
) -> Path | None:
    """The one rule for unreadable images, of ``fit`` (the decoded cache) and ``evaluate --images`` alike:
    skip them, count them, list them; stop if there are too many.

    The list (absolute path, reason) is written to ``keep``, which outlives the run (a failed run's folder is
    removed); with a ``trainer`` it is also copied to ``bad_images.txt`` in its run directory (global rank zero
    only). One warning gives the count, examples and where the list is. Returns the list's path.

    Args:
        bad: (path relative to ``root``, reason) of each unreadable file or folder.
        total: How many files and folders there were, bad ones included.
        root: The image folder.
        max_bad_fraction: The largest fraction of bad ones that is skipped with a warning.
        keep: Where the list goes.
        trainer: The run's trainer, if any.

    Raises:
        BadImagesError: more than ``max_bad_fraction`` of them are bad; the message names the list (in
            ``keep``, which exists after the run is gone) and the first examples.
    """
    if not bad:
        return None
    text = "".join(f"{root.absolute() / path}\t{reason}\n" for path, reason in bad)
    listed = keep
    try:
        if not keep.is_file() or keep.read_text() != text:  # a shared, read-only cache folder is read, not written
            keep.parent.mkdir(parents=True, exist_ok=True)
            tmp = keep.with_name(f".{keep.name}.{os.getpid()}.tmp")
            tmp.write_text(text)
            os.replace(tmp, keep)
    except OSError:
        listed = None
    fraction = len(bad) / max(total, 1)
    examples = ", ".join(f"{path} ({reason})" for path, reason in bad[:3])
    summary = f"{len(bad)} of {total} image files under {root} ({fraction:.1%}) could not be read"
    where = f"The full list is in {listed}." if listed else f"All of them: {'; '.join(p for p, _ in bad)}."
    if fraction > max_bad_fraction:
        raise BadImagesError(
            f"{summary}, more than max_bad_fraction={max_bad_fraction} allows. Examples: {examples}. {where} "
            "Replace or remove those files, or raise --data.init_args.max_bad_fraction."
        )
    if trainer is not None:
        run_dir = trainer_run_dir(trainer)
        if trainer.is_global_zero:
            run_dir.mkdir(parents=True, exist_ok=True)
            (run_dir / "bad_images.txt").write_text(text)
        listed = run_dir / "bad_images.txt"
        where = f"The full list is in {listed}."
    rank_zero_warn(f"{summary} and are skipped: {examples}. {where}")
    return listed


def try_decode(decode: Callable[[Path], Any], path: Path) -> tuple[Any, str | None]:
    """``(decode(path), None)``, or ``(None, "Error: why")`` for a file that cannot be decoded: the one rule by
    which a broken file of any kind is skipped and reported, never fatal."""
    try:
        return decode(path), None
    except Exception as err:
        return None, f"{type(err).__name__}: {err}"

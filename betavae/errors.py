"""Known failures: errors whose message alone says what went wrong and what to do.

The command line prints such an error as one message, without a traceback, and exits with status 1
(``BETAVAE_DEBUG=1`` shows the traceback as well). Anything else is a bug and keeps its traceback.
Each class also derives from the built-in exception it refines, so ``except ValueError`` still works.
"""

from __future__ import annotations

import os

DEBUG_ENV = "BETAVAE_DEBUG"


class BetaVAEError(Exception):
    """Base of the known failures: the message names the setting, path or value and the fix."""


class ConfigError(BetaVAEError, ValueError):
    """A setting that cannot work: an impossible architecture, a value out of range, a linked setting
    given by hand, a mismatch between a checkpoint and the data."""


class MissingFileError(BetaVAEError, FileNotFoundError):
    """A file or folder the run needs is not there; the message names the path, the layout and where
    to get it."""


class DataError(BetaVAEError, ValueError):
    """Data that is there but unusable: a malformed file, too few images for a batch."""


class CheckpointError(BetaVAEError, ValueError):
    """A path that is not a readable checkpoint, or one that does not fit the model."""


class UnwritableFolderError(BetaVAEError, PermissionError):
    """A folder the run must write to cannot be created or written: a file stands in its place, no
    permission, or no space left; the message names the path and the setting that chooses another."""


def known_error(error: BaseException) -> BetaVAEError | None:
    """The ``BetaVAEError`` behind ``error`` (itself, or one it was raised from, e.g. inside
    jsonargparse's instantiation), or ``None`` for anything else."""
    seen: set[int] = set()
    current: BaseException | None = error
    while current is not None and id(current) not in seen:
        if isinstance(current, BetaVAEError):
            return current
        seen.add(id(current))
        current = current.__cause__ or current.__context__
    return None


def debugging() -> bool:
    """Whether ``BETAVAE_DEBUG`` asks for tracebacks of known errors too."""
    return os.environ.get(DEBUG_ENV, "").strip().lower() not in ("", "0", "false", "no")

"""Process checks: whether the writer of a temporary file (a checkpoint, a cache) still runs."""

from __future__ import annotations

import os


def process_alive(pid: int) -> bool:
    """Whether process ``pid`` of this host still runs: a temporary file whose writer is gone is abandoned."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # it exists, under another user
        return True
    return True

"""Progress of a scoring run, metric by metric: a protocol, a recorder (for profiles) and a rich bar.

``evaluate_codes`` and ``evaluate_representation`` call ``start(metric, rows)`` before each metric,
``advance(rows)`` as factor rows are encoded (or read back from ``GridCodes``) and ``finish(metric)``
after it; ``rows`` is 0 for the metrics that only fit estimators (the bar then shows a spinner).
"""

from __future__ import annotations

import os
import time
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from collections.abc import Iterator

    from betavae.disentanglement.grid_codes import GridCodes


class SuiteProgress(Protocol):
    """What a scoring run reports; every method is optional to act on."""

    def start(self, metric: str, rows: int) -> None: ...

    def advance(self, rows: int) -> None: ...

    def finish(self, metric: str) -> None: ...


@contextmanager
def stage(progress: SuiteProgress | None, metric: str, rows: int = 0) -> Iterator[None]:
    """``progress.start(metric, rows)`` ... ``progress.finish(metric)`` around a block (nothing for None)."""
    if progress is None:
        yield
        return
    progress.start(metric, rows)
    yield
    progress.finish(metric)


def _proc_stats() -> dict[int, tuple[int, float]]:
    """{pid: (parent pid, user + system CPU seconds)} of every process, from Linux's /proc."""
    tick = os.sysconf("SC_CLK_TCK")
    stats = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        with suppress(OSError, ValueError, IndexError):  # a process that ended meanwhile
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            stats[int(entry.name)] = (int(fields[1]), (int(fields[11]) + int(fields[12])) / tick)
    return stats


def cpu_seconds() -> float:
    """User + system CPU seconds of this process and its live descendants (joblib's DCI workers).

    From /proc on Linux; elsewhere this process's own time only.
    """
    own = time.process_time()
    if not Path("/proc/self/stat").exists():
        return own
    stats = _proc_stats()
    family, total = {os.getpid()}, own
    grew = True
    while grew:
        grew = False
        for pid, (parent, seconds) in stats.items():
            if parent in family and pid not in family:
                family.add(pid)
                total += seconds
                grew = True
    return total


@dataclass
class MetricCost:
    """Wall and CPU seconds of one metric, and the factor rows it asked for and the images it encoded."""

    wall: float = 0.0
    cpu: float = 0.0
    requested: int = 0
    encoded: int = 0


@dataclass
class CostRecorder:
    """A ``SuiteProgress`` that records each metric's ``MetricCost`` (wall, CPU incl. worker processes)."""

    cache: GridCodes | None = None
    costs: dict[str, MetricCost] = field(default_factory=dict)
    _mark: tuple[float, float, int, int] = (0.0, 0.0, 0, 0)

    def _counts(self) -> tuple[int, int]:
        return (self.cache.requested, self.cache.rendered) if self.cache is not None else (0, 0)

    def start(self, metric: str, rows: int) -> None:
        self._mark = (time.perf_counter(), cpu_seconds(), *self._counts())

    def advance(self, rows: int) -> None:
        pass

    def finish(self, metric: str) -> None:
        wall, cpu, requested, encoded = self._mark
        now_requested, now_encoded = self._counts()
        self.costs[metric] = MetricCost(
            time.perf_counter() - wall, cpu_seconds() - cpu, now_requested - requested, now_encoded - encoded
        )


class RichProgress:
    """A rich progress bar per metric (rows encoded, or a spinner while estimators fit), on stderr.

    Use as a context manager around the scoring call; leaving it (Ctrl-C included) stops the display.
    """

    def __init__(self, description: str = "scoring") -> None:
        from rich.console import Console
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

        self.description = description
        self._progress = Progress(
            SpinnerColumn(),
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            console=Console(stderr=True),
            transient=False,
        )
        self._task: Any = None

    @property
    def live(self) -> Any:
        """rich's ``Live`` display of the bars (``live.is_started`` while shown)."""
        return self._progress.live

    def __enter__(self) -> RichProgress:
        from rich.errors import LiveError

        with suppress(LiveError):  # another live display (e.g. Lightning's progress bar) owns the terminal
            self._progress.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._progress.stop()

    def start(self, metric: str, rows: int) -> None:
        self._task = self._progress.add_task(f"{self.description}: {metric}", total=rows or None)

    def advance(self, rows: int) -> None:
        if self._task is not None:
            self._progress.advance(self._task, rows)

    def finish(self, metric: str) -> None:
        if self._task is not None:
            task = self._progress.tasks[-1]
            self._progress.update(self._task, total=task.total or 1, completed=task.total or 1)
            self._task = None

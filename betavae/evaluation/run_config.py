"""A run's resolved ``config.yaml``, read once per report and carried with the run's records.

``report`` reads each run's config for its seed, its setting (model, data, training length) and, for a run
that was never evaluated, its dataset and β. ``RunConfig.read`` reads the file once; ``attach`` stores the
result in each record (``record["run_config"]``) and everything downhill (``with_seeds``, ``aggregate``,
the charts) takes it from there.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from betavae.models.legacy import upgrade_config

#: the record key that carries a run's ``RunConfig``
KEY = "run_config"


@dataclass(frozen=True)
class RunConfig:
    """The resolved ``config.yaml`` of one run folder (a run written before issue 21's redesign with its old model
    arguments rewritten the way they are written now, ``betavae.models.legacy``).

    Attributes:
        path: The file (``None`` for a record without a run folder).
        config: Its contents; ``None`` when the run has no ``config.yaml``.
    """

    path: Path | None
    config: dict[str, Any] | None = field(default=None, repr=False)

    @classmethod
    def read(cls, run: str | Path | None) -> RunConfig:
        """The ``config.yaml`` of the run folder ``run`` (read now, once), or an empty one without it."""
        if not run:
            return cls(None, None)
        path = Path(str(run)).expanduser() / "config.yaml"
        if not path.is_file():
            return cls(path, None)
        config, _ = upgrade_config(yaml.safe_load(path.read_text()) or {})  # a run from before the redesign
        return cls(path, config)

    def section(self, name: str) -> tuple[str, dict[str, Any]]:
        """(``class_path``, ``init_args``) of the ``model`` or ``data`` section (``""``, ``{}`` when absent)."""
        part = (self.config or {}).get(name) or {}
        return str(part.get("class_path", "")), dict(part.get("init_args") or {})

    @property
    def seed(self) -> int | None:
        """``seed_everything``; ``None`` without a config or for an unseeded run."""
        seed = (self.config or {}).get("seed_everything")
        return seed if isinstance(seed, int) and not isinstance(seed, bool) else None


def run_config(record: Mapping[str, Any]) -> RunConfig:
    """The ``RunConfig`` a record carries, else the one of its run folder (``record["run"]``), read now."""
    found = record.get(KEY)
    return found if isinstance(found, RunConfig) else RunConfig.read(record.get("run"))


def attach(record: Mapping[str, Any]) -> dict[str, Any]:
    """A copy of ``record`` carrying its run's ``RunConfig`` (read once: not again if it already carries one)."""
    return {**record, KEY: run_config(record)}

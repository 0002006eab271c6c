"""A run's ``evaluate`` scores in its W&B run's summary, and what an offline W&B run holds.

``log_evaluation`` reopens the W&B run of a training run (its id from ``wandb_id`` in the run directory,
folder and project from the run's ``config.yaml``; W&B's ``resume="allow"``) and adds the numeric scores of
an ``evaluate`` JSON to its summary as ``eval/<key>`` (``eval/mig``, ``eval/psnr``, ``eval/fid``, ...), so a
dashboard can plot them against the run's config keys (``beta``, ``variant``, ``dataset``; see
``betavae.tracking``). Offline (``WANDB_MODE=offline``) this writes a second offline-run folder with the same
id, which ``wandb sync`` merges into the one run.

``read_offline_run`` reads an offline run's files back (id, group, tags, config and the last summary value of
each key) without the W&B service: the files are W&B's LevelDB-style log of ``wandb_internal_pb2.Record``
protobufs (``wandb/sdk/lib/..._store``: a 7-byte header ``:W&B``, magic, version; then 32 KiB blocks of
records, each chunk with a 7-byte header: CRC32C, length, type FULL/FIRST/MIDDLE/LAST). It is what a test or
a user checks before syncing.
"""

from __future__ import annotations

import json
import math
import struct
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import yaml

from betavae.errors import MissingFileError
from betavae.tracking import ID_FILE

__all__ = ["evaluation_summary", "log_evaluation", "offline_records", "read_offline_run"]

_HEADER = 7  # ":W&B", magic (2 bytes), version
_BLOCK = 32 * 1024
_CHUNK = 7  # CRC32C (4), length (2), type (1)
_FULL, _FIRST, _MIDDLE, _LAST = 1, 2, 3, 4


def evaluation_summary(result: dict[str, Any]) -> dict[str, float]:
    """The numeric scores of an ``evaluate`` record, as ``eval/<key>`` (finite numbers only, no booleans)."""
    return {
        f"eval/{key}": float(value)
        for key, value in result.items()
        if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    }


def _wandb_settings(run_dir: Path) -> tuple[str | None, str | None]:
    """The (project, save_dir) of the run's WandbLogger in its ``config.yaml``, or ``(None, None)``."""
    path = run_dir / "config.yaml"
    if not path.is_file():
        return None, None
    loggers = (yaml.safe_load(path.read_text()) or {}).get("trainer", {}).get("logger") or []
    for entry in loggers if isinstance(loggers, list) else [loggers]:
        if isinstance(entry, dict) and str(entry.get("class_path", "")).endswith("WandbLogger"):
            init = entry.get("init_args") or {}
            return init.get("project"), init.get("save_dir")
    return None, None


def log_evaluation(evaluation_json: str | Path, project: str | None = None) -> str:
    """Add an ``evaluate`` JSON's scores to the summary of its training run's W&B run; returns that run's id.

    Args:
        evaluation_json: ``<run>/evaluation/last.json`` as ``evaluate`` writes it.
        project: The W&B project; ``None``: the run's WandbLogger project, else ``betavae``.

    Raises:
        MissingFileError: the JSON does not exist, or its run has no W&B run (no ``wandb_id``).
    """
    path = Path(evaluation_json).expanduser()
    if not path.is_file():
        raise MissingFileError(f"no evaluation file {path} (run `python -m betavae evaluate --ckpt_path ...` first)")
    result = json.loads(path.read_text())
    run_dir = Path(result.get("run") or path.parent.parent)
    id_file = run_dir / ID_FILE
    if not id_file.is_file():
        raise MissingFileError(f"{run_dir} has no W&B run ({ID_FILE} is missing): it was trained without a WandbLogger")
    run_project, save_dir = _wandb_settings(run_dir)
    import wandb

    run = wandb.init(
        id=id_file.read_text().strip(),
        resume="allow",
        project=project or run_project or "betavae",
        dir=str(save_dir or run_dir),
        settings=wandb.Settings(silent=True),
    )
    try:
        run.summary.update(evaluation_summary(result))
        return run.id
    finally:
        run.finish()
        wandb.teardown()  # waits for W&B's service to write the run's file (finish alone may return before)


def offline_records(path: str | Path) -> Iterator[Any]:
    """The ``wandb_internal_pb2.Record`` messages of one ``run-<id>.wandb`` file, in order."""
    from wandb.proto import wandb_internal_pb2

    data = Path(path).read_bytes()
    if data[:4] != b":W&B":
        raise ValueError(f"{path} is not a W&B run file (no ':W&B' header)")
    pos, pending = _HEADER, b""
    while pos + _CHUNK <= len(data):
        room = _BLOCK - pos % _BLOCK
        if room < _CHUNK:  # a block's tail too short for a chunk header is padding
            pos += room
            continue
        _crc, length, kind = struct.unpack("<IHB", data[pos : pos + _CHUNK])
        payload = data[pos + _CHUNK : pos + _CHUNK + length]
        pos += _CHUNK + length
        if kind in (_FULL, _FIRST):
            pending = payload
        elif kind in (_MIDDLE, _LAST):
            pending += payload
        else:  # zero padding
            continue
        if kind in (_FULL, _LAST):
            record = wandb_internal_pb2.Record()
            record.ParseFromString(pending)
            yield record


def read_offline_run(folder: str | Path) -> dict[str, Any]:
    """What the offline W&B run(s) under ``folder`` hold: ``id``, ``group``, ``tags``, ``config`` and
    ``summary`` (each key's last value; summaries of several folders with the same id are merged in time
    order, as ``wandb sync`` merges them).

    Raises:
        MissingFileError: no ``offline-run-*/run-*.wandb`` under ``folder``.
    """
    files = sorted(Path(folder).expanduser().glob("**/offline-run-*/run-*.wandb"))
    if not files:
        raise MissingFileError(f"no offline W&B run (offline-run-*/run-*.wandb) under {folder}")
    out: dict[str, Any] = {"id": None, "group": None, "tags": [], "config": {}, "summary": {}}
    for file in files:
        for record in offline_records(file):
            kind = record.WhichOneof("record_type")
            if kind == "run":
                out["id"], out["group"] = record.run.run_id, record.run.run_group or out["group"]
                out["tags"] = list(dict.fromkeys([*out["tags"], *record.run.tags]))
                items = record.run.config.update
            elif kind == "config":
                items = record.config.update
            elif kind == "summary":
                for item in record.summary.update:
                    out["summary"][item.key or "/".join(item.nested_key)] = json.loads(item.value_json)
                continue
            else:
                continue
            for item in items:
                if item.key != "_wandb":
                    out["config"][item.key or "/".join(item.nested_key)] = json.loads(item.value_json)
    return out

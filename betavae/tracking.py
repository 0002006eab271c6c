"""W&B runs that can be compared across β: the run's config, group and tags, and an id that survives resumes.

Everything is set through ``WandbLogger``'s own arguments before the logger is built
(``configure_wandb``, called from the CLI's ``before_instantiate_classes``); every W&B run gets:

- ``config``: the comparison keys of ``betavae.run_labels.run_keys`` (``dataset``, ``variant``, ``beta``,
  ``kld_weight``, ``latent_dim``, ``image_size``, ``channels``, ``loss_type``, ``likelihood`` and the model's
  other loss weights): the same keys for every variant, so a dashboard can put β on an axis and group by
  dataset (Lightning adds the model's own hyperparameters);
- ``group``: the dataset, unless the config sets one; ``tags``: the dataset, the variant and ``beta10``
  (β written with ``:g``), added to the config's own tags;
- ``id``: the config's ``id`` if it gives one; else, when the run resumes from a checkpoint, the id kept in
  that checkpoint's run directory (``wandb_id``), so the resumed run continues the same W&B run; else on
  SLURM ``<name>-<SLURM_JOB_ID>`` (array jobs ``<jobid>_<taskid>``), which a requeued job gets again; else
  a fresh id. Runs started by a W&B sweep agent keep the agent's id (``WANDB_RUN_ID``): W&B ignores any
  other inside a sweep.

``write_run_ids`` keeps the id in ``wandb_id`` of the run directory (and, on SLURM, in the trainer's
``default_root_dir``, where Lightning keeps its ``hpc_ckpt_N.ckpt``; read back only when such a checkpoint is
there, i.e. when Lightning resumes from it) once the run has started.
"""

from __future__ import annotations

import os
import re
import secrets
import string
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import lightning as L
from jsonargparse import Namespace
from lightning.pytorch.loggers import WandbLogger

from betavae.run_folders import run_dir_of, trainer_run_dir
from betavae.run_labels import run_info, run_keys, short_name
from betavae.wandb_keys import beta_tag

ID_FILE = "wandb_id"
WANDB_LOGGER = "WandbLogger"

__all__ = ["ID_FILE", "configure_wandb", "run_info", "run_tags", "wandb_run_id", "write_run_ids"]


def run_tags(info: dict[str, Any]) -> list[str]:
    """``[dataset, variant, beta10]`` (the last only for models with a β)."""
    tags = [str(info["dataset"]), str(info["variant"])]
    if info.get("beta") is not None:
        tags.append(beta_tag(info["beta"]))
    return tags


def slurm_job_id() -> str | None:
    """``SLURM_JOB_ID``, or ``<array job>_<task>`` for array jobs; ``None`` outside SLURM."""
    array_job, task = os.environ.get("SLURM_ARRAY_JOB_ID"), os.environ.get("SLURM_ARRAY_TASK_ID")
    if array_job and task:
        return f"{array_job}_{task}"
    return os.environ.get("SLURM_JOB_ID") or None


def _clean(text: str) -> str:
    """A W&B-safe id part: letters, digits, ``-`` and ``_`` only."""
    return re.sub(r"[^A-Za-z0-9_-]+", "-", text).strip("-") or "run"


def read_id(folder: str | Path) -> str | None:
    """The W&B id kept in ``folder`` (its ``wandb_id`` file), or ``None``."""
    path = Path(folder) / ID_FILE
    return (path.read_text().strip() or None) if path.is_file() else None


def resume_folders(default_root_dir: str | Path, ckpt_path: str | None) -> list[Path]:
    """Where a resumed run's id may be kept: the checkpoint's run directory, and on SLURM the
    ``default_root_dir`` of Lightning's ``hpc_ckpt_N.ckpt``."""
    folders = []
    if ckpt_path and ckpt_path not in ("best", "last", "hpc", "registry"):
        folders.append(run_dir_of(ckpt_path))
    root = Path(default_root_dir)
    if slurm_job_id() is not None and any(root.glob("hpc_ckpt_*.ckpt")):  # Lightning will auto-resume from there
        folders.append(root)
    return folders


def wandb_run_id(default_root_dir: str | Path, name: str | None, ckpt_path: str | None) -> str:
    """The id of this run's W&B run (see the module docstring for the rule)."""
    for folder in resume_folders(default_root_dir, ckpt_path):
        if found := read_id(folder):
            return found
    job = slurm_job_id()
    if job is not None:
        return f"{_clean(name or 'betavae')}-{_clean(job)}"
    return "".join(secrets.choice(string.ascii_lowercase + string.digits) for _ in range(8))  # W&B's own format


def logger_entries(trainer_config: Namespace) -> Iterator[Namespace]:
    """The ``class_path``/``init_args`` entries of a parsed config's ``trainer.logger`` (one or a list)."""
    loggers = trainer_config.get("logger")
    for entry in loggers if isinstance(loggers, list) else [loggers]:
        if isinstance(entry, Namespace) and "class_path" in entry:
            yield entry


def configure_wandb(config: Namespace) -> None:
    """Give every W&B logger of a parsed subcommand config (``trainer``, ``model``, ``data``,
    ``ckpt_path``) the run's config, group, tags, id and an absolute folder, through ``WandbLogger``'s own
    arguments, before the logger is built."""
    trainer = config.get("trainer") or Namespace()
    entries = [e for e in logger_entries(trainer) if short_name(e.class_path) == WANDB_LOGGER]
    if not entries:
        return
    model, data = config.get("model") or Namespace(), config.get("data") or Namespace()
    info = run_keys(
        model.get("class_path", "unknown"),
        (model.get("init_args") or Namespace()).as_dict(),
        data.get("class_path", "unknown"),
        (data.get("init_args") or Namespace()).as_dict(),
    )
    for entry in entries:
        if entry.get("init_args") is None:
            entry.init_args = Namespace()
        init = entry.init_args
        if init.get("save_dir"):  # absolute: W&B's service process may live in another working directory
            init.save_dir = str(Path(init.save_dir).expanduser().resolve())
        init.config = {**info, **(init.get("config") or {})}
        init.group = init.get("group") or str(info["dataset"])
        init.tags = list(dict.fromkeys([*(init.get("tags") or []), *run_tags(info)]))
        if os.environ.get("WANDB_SWEEP_ID"):  # a sweep agent's run: W&B ignores init(id=...) and uses its own
            init.id = os.environ.get("WANDB_RUN_ID") or init.get("id")
        elif not init.get("id"):
            root = trainer.get("default_root_dir") or "."
            init.id = wandb_run_id(root, init.get("name") or init.get("project"), config.get("ckpt_path"))
            init.resume = "allow"


def write_run_ids(trainer: L.Trainer) -> None:
    """Keep each W&B logger's run id in ``wandb_id`` of the run directory (and on SLURM of the trainer's
    ``default_root_dir``). Rank zero, once the loggers have started (e.g. from the config-saving callback)."""
    ids = [logger.version for logger in trainer.loggers if isinstance(logger, WandbLogger) and logger.version]
    if not ids or not trainer.is_global_zero:
        return
    folders = [trainer_run_dir(trainer)]
    if slurm_job_id() is not None:
        folders.append(Path(trainer.default_root_dir))
    for folder in folders:
        folder.mkdir(parents=True, exist_ok=True)
        (folder / ID_FILE).write_text(str(ids[0]) + "\n")

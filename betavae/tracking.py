"""W&B runs that can be compared across β: the run's config, group and tags, and an id that survives resumes.

Every W&B run gets, before it starts:

- ``config``: ``dataset``, ``variant`` (the model class), ``beta``, ``kld_weight``, ``latent_dim``,
  ``image_size``, ``channels``, ``loss_type`` and ``likelihood``: the same keys for every variant, so a
  dashboard can put β on an axis and group by dataset (Lightning adds the model's own hyperparameters);
- ``group``: the dataset, unless the config sets one; ``tags``: the dataset, the variant and ``beta10``
  (β written with ``:g``), added to the config's own tags;
- ``id``: the config's ``id`` if it gives one; else, when the run resumes from a checkpoint, the id kept
  in that checkpoint's run directory (``wandb_id``), so the resumed run continues the same W&B run; else
  on SLURM ``<name>-<SLURM_JOB_ID>`` (array jobs ``<jobid>_<taskid>``), which a requeued job gets again;
  else a fresh id. The id is written to ``wandb_id`` in the run directory (and, on SLURM, in
  ``trainer.default_root_dir``, where Lightning keeps its ``hpc_ckpt_N.ckpt``; read back only when such
  a checkpoint is there, i.e. when Lightning resumes from it). Runs started by a W&B sweep agent keep
  the agent's id (``WANDB_RUN_ID``): W&B ignores any other inside a sweep.
"""

from __future__ import annotations

import os
import re
import secrets
import string
from pathlib import Path
from typing import Any

import lightning as L
from lightning.pytorch.loggers import WandbLogger
from lightning.pytorch.utilities import rank_zero_warn

from betavae.callbacks._common import datamodule_label

ID_FILE = "wandb_id"


def run_info(model: Any, datamodule: Any) -> dict[str, Any]:
    """The keys every run carries for comparisons: dataset, variant, β, kld_weight, latent size, ...

    β is the model's ``beta`` hyperparameter; a plain VAE counts as β = 1; deterministic autoencoders
    have none (``None``).
    """
    hparams = dict(getattr(model, "hparams", {}) or {})
    variant = type(model).__name__
    beta = hparams.get("beta")
    if beta is None and variant in ("VAE", "ConditionalVAE"):
        beta = 1.0
    return {
        "dataset": datamodule_label(datamodule),
        "variant": variant,
        "beta": float(beta) if beta is not None else None,
        "kld_weight": hparams.get("kld_weight"),
        "latent_dim": getattr(model, "latent_dim", hparams.get("latent_dim")),
        "image_size": getattr(model, "image_size", None),
        "channels": getattr(model, "in_channels", None),
        "loss_type": hparams.get("loss_type"),
        "likelihood": hparams.get("likelihood"),
    }


def run_tags(info: dict[str, Any]) -> list[str]:
    """``[dataset, variant, beta10]`` (the last only for models with a β)."""
    tags = [str(info["dataset"]), str(info["variant"])]
    if info.get("beta") is not None:
        tags.append(f"beta{info['beta']:g}")
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


def resume_folders(trainer: L.Trainer, ckpt_path: str | None) -> list[Path]:
    """Where a resumed run's id may be kept: the checkpoint's run directory (for ``.../checkpoints/x.ckpt``
    its parent's parent), and on SLURM the ``default_root_dir`` of Lightning's ``hpc_ckpt_N.ckpt``."""
    folders = []
    if ckpt_path and ckpt_path not in ("best", "last", "hpc", "registry"):
        folder = Path(ckpt_path).expanduser().resolve().parent
        folders.append(folder.parent if folder.name == "checkpoints" else folder)
    root = Path(trainer.default_root_dir)
    if slurm_job_id() is not None and any(root.glob("hpc_ckpt_*.ckpt")):  # Lightning will auto-resume from there
        folders.append(root)
    return folders


def wandb_run_id(trainer: L.Trainer, name: str | None, ckpt_path: str | None) -> str:
    """The id of this run's W&B run (see the module docstring for the rule)."""
    for folder in resume_folders(trainer, ckpt_path):
        if found := read_id(folder):
            return found
    job = slurm_job_id()
    if job is not None:
        return f"{_clean(name or 'betavae')}-{_clean(job)}"
    return "".join(secrets.choice(string.ascii_lowercase + string.digits) for _ in range(8))  # W&B's own format


def prepare_wandb(trainer: L.Trainer, model: Any, datamodule: Any, ckpt_path: str | None) -> None:
    """Give every W&B logger of ``trainer`` the run's config, group, tags and id before its run starts.

    Call it before ``fit`` on every process (``trainer.log_dir`` is a collective under DDP).
    """
    loggers = [logger for logger in trainer.loggers if isinstance(logger, WandbLogger)]
    if not loggers:
        return
    info = run_info(model, datamodule)
    for logger in loggers:
        init = logger._wandb_init  # WandbLogger's wandb.init arguments, used when its run starts
        if logger._experiment is not None:
            rank_zero_warn("the W&B run started before fit; its config, group, tags and id are left as they are")
            continue
        if init.get("dir"):  # absolute: W&B's service process may live in another working directory
            init["dir"] = str(Path(init["dir"]).expanduser().resolve())
            logger._save_dir = init["dir"]
        init["config"] = {**info, **(init.get("config") or {})}
        init["group"] = init.get("group") or str(info["dataset"])
        init["tags"] = list(dict.fromkeys([*(init.get("tags") or []), *run_tags(info)]))
        if os.environ.get("WANDB_SWEEP_ID"):  # a sweep agent's run: W&B ignores init(id=...) and uses its own
            init["id"] = os.environ.get("WANDB_RUN_ID") or init.get("id")
        elif not init.get("id"):
            init["id"] = wandb_run_id(trainer, init.get("name") or init.get("project"), ckpt_path)
            init["resume"] = "allow"
        logger._id = init["id"]
        if not init["id"]:
            continue
        folders = [Path(trainer.log_dir or trainer.default_root_dir)]
        if slurm_job_id() is not None:
            folders.append(Path(trainer.default_root_dir))
        if trainer.is_global_zero:
            for folder in folders:
                folder.mkdir(parents=True, exist_ok=True)
                (folder / ID_FILE).write_text(init["id"] + "\n")

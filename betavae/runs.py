"""What identifies a run: its folders, its comparison keys (dataset, variant, β, ...), per-image seeds.

The one home of these rules, shared by the CLI, the callbacks, W&B tracking, ``evaluate`` and ``report``:

- ``run_dir_of(ckpt)``: a checkpoint's run folder; ``trainer_run_dir(trainer)``: a trainer's.
- ``dataset_label``: the short dataset name of tables, W&B groups and tags.
- ``model_beta``: the β a run is compared by (a plain VAE counts as β = 1, a deterministic autoencoder has
  none), and ``run_keys``: every comparison key, from a config or from live objects.
- ``image_seeds``: the seed of each image of a batch (its dataset index), which makes validation noise and
  corruptions independent of batching, order and the number of processes.
"""

from __future__ import annotations

import os
import weakref
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import lightning as L
import torch

#: variants that are VAEs with an unweighted KL (β = 1); deterministic autoencoders have no β
UNIT_BETA_VARIANTS = ("VAE", "ConditionalVAE")

_RUN_DIRS: weakref.WeakKeyDictionary[L.Trainer, Path] = weakref.WeakKeyDictionary()


def process_alive(pid: int) -> bool:
    """Whether process ``pid`` of this host still runs: a temporary file whose writer is gone is abandoned."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # it exists, under another user
        return True
    return True


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


def image_seeds(batch: Mapping[str, Any]) -> list[int]:
    """A seed per image of ``batch``: its dataset ``"index"``, else its position in the batch."""
    index = batch.get("index")
    if isinstance(index, torch.Tensor):
        return [int(i) for i in index.tolist()]
    return list(range(batch["image"].shape[0]))


def short_name(class_path: str) -> str:
    """``betavae.models.BetaVAE`` → ``BetaVAE``."""
    return str(class_path).rsplit(".", 1)[-1]


def dataset_label(class_name: str, root: str | Path | None = None, name: str | None = None) -> str:
    """A short dataset name for tables: ``name`` if the data module has one; for a generic folder module
    (``ImageFolderDataModule``) the folder's name (``img_align_celeba``); else the class name without
    ``DataModule``, lower case (``shapes``)."""
    if name:
        return str(name)
    if root and "Folder" in class_name:
        return Path(str(root)).expanduser().name or str(root)
    short = short_name(class_name).removesuffix("DataModule")
    return (short or class_name).lower()


def datamodule_label(datamodule: Any) -> str:
    """``dataset_label`` of a data module instance (``None`` gives ``"unknown"``)."""
    if datamodule is None:
        return "unknown"
    return dataset_label(
        type(datamodule).__name__, getattr(datamodule, "root", None), getattr(datamodule, "name", None)
    )


def model_beta(variant: str, hparams: Mapping[str, Any]) -> float | None:
    """The β a run is compared by: the model's ``beta``; 1 for a plain (or conditional) VAE, whose KL is
    unweighted; ``None`` for models without a KL term (deterministic autoencoders, GANs) and for the capacity
    loss (``loss_type: B``, the AnnealedVAE), whose KL weight is γ and whose ``beta`` is unused."""
    if hparams.get("loss_type") == "B":
        return None
    beta = hparams.get("beta")
    if beta is None and short_name(variant) in UNIT_BETA_VARIANTS:
        return 1.0
    return float(beta) if beta is not None else None


#: hyperparameters of the comparison models that a dashboard groups by, when a model has them: BetaVAE's
#: ``loss_type``/``gamma``/``max_capacity`` (AnnealedVAE), BetaTCVAE's ``alpha``/``gamma`` (its β is the TC
#: weight), FactorVAE's ``gamma``, DIPVAE's ``dip_type``/``lambda_od``/``lambda_d``; ``gamma`` means what the
#: ``variant`` key says
WEIGHT_KEYS = ("kld_weight", "loss_type", "gamma", "max_capacity", "alpha", "dip_type", "lambda_od", "lambda_d")


def run_keys(
    model_class: str, model_args: Mapping[str, Any], data_class: str, data_args: Mapping[str, Any]
) -> dict[str, Any]:
    """The keys every run carries for comparisons: dataset, variant, β, latent size, image shape,
    likelihood, and the loss weights of ``WEIGHT_KEYS`` (``None`` where the model has no such weight): the
    same keys for every variant, so that a dashboard can group and filter any run by any of them.

    Args:
        model_class: The model's class name or path.
        model_args: Its init arguments (a config's ``init_args`` or a model's ``hparams``).
        data_class: The data module's class name or path.
        data_args: Its init arguments.
    """
    variant = short_name(model_class)
    net_args = model_args.get("net")
    net_args = net_args.get("init_args", {}) if isinstance(net_args, Mapping) else {}
    keys: dict[str, Any] = {
        "dataset": dataset_label(data_class, data_args.get("root"), data_args.get("name")),
        "variant": variant,
        "beta": model_beta(variant, model_args),
        "latent_dim": model_args.get("latent_dim", net_args.get("latent_dim")),
        "image_size": data_args.get("image_size", model_args.get("image_size")),
        "channels": data_args.get("channels", model_args.get("in_channels")),
        "likelihood": model_args.get("likelihood"),
    }
    keys.update({k: model_args.get(k) for k in WEIGHT_KEYS})  # None where the model has no such weight
    return keys


def run_info(model: Any, datamodule: Any) -> dict[str, Any]:
    """``run_keys`` of live objects: a model (its ``hparams``) and a data module."""
    hparams = dict(getattr(model, "hparams", {}) or {})
    hparams.setdefault("latent_dim", getattr(model, "latent_dim", None))
    hparams.setdefault("image_size", getattr(model, "image_size", None))
    hparams.setdefault("in_channels", getattr(model, "in_channels", None))
    data_args = {
        "root": getattr(datamodule, "root", None),
        "name": getattr(datamodule, "name", None),
        "image_size": getattr(model, "image_size", None),
        "channels": getattr(model, "in_channels", None),
    }
    data_class = type(datamodule).__name__ if datamodule is not None else "unknown"
    keys = run_keys(type(model).__name__, hparams, data_class, data_args)
    if datamodule is None:
        keys["dataset"] = "unknown"
    return keys


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

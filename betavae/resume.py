"""What a resume does with a setting that differs from the checkpoint's: it takes effect, or the run stops.

``fit --ckpt_path`` restores the weights, the optimizer and scheduler states and the loops from the
checkpoint, and builds everything else from the config. A setting given now that differs from the
checkpoint's hyperparameters is therefore handled by kind (``classify``):

- ``architecture`` (channels, image size, latent size, the network, its widths and output activation, the
  data normalization): the run stops with one message naming each setting, both values and what to do: the
  checkpoint's weights belong to the other model, even where their shapes happen to fit.
- ``optimizer`` (learning rates, betas, weight decay, momentum, the scheduler's settings): takes effect.
  Lightning would restore the checkpoint's values with the optimizer state (a new ``lr`` would be recorded
  in ``config.yaml`` and ``hparams.yaml`` but not used); ``ResumeSettings`` rewrites the restored param
  groups (a learning rate keeps the schedule's progress: restored × new / old) and the scheduler's settings.
- anything else (β, loss weights, likelihood, corruption, logging): takes effect, since the model is built
  from the config; trainer settings (``max_epochs``, ``limit_*``) take effect as Lightning applies them.

Every difference is listed in one warning when the run resumes, so the record and the run agree. A resume
that Lightning itself will cut one epoch short (bounded by ``max_steps`` and ``max_epochs``, from an epoch-end
checkpoint) is warned about too (``epoch_counted_again``).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

import lightning as L
import torch
from lightning.pytorch.callbacks import Callback
from lightning.pytorch.utilities import rank_zero_warn

from betavae.errors import ConfigError

#: settings that decide what the weights mean: never changed by a resume
ARCHITECTURE = frozenset(
    {
        "in_channels",
        "image_size",
        "latent_dim",
        "hidden_channels",
        "hidden_dims",
        "num_classes",
        "architecture",
        "net",
        "encoder",
        "decoder",
        "generator",
        "discriminator",
        "output_activation",
        "mean",
        "std",
    }
)
#: optimizer and scheduler settings (``lr``, ``discriminator_lr``, ``discriminator_betas``, ``scheduler_gamma``...)
OPTIMIZER = re.compile(r"(^|_)(lr|betas?|weight_decay|momentum|eps|optimizer|scheduler)($|_)")
#: a scheduler's state (not its settings) in its ``state_dict``
SCHEDULER_STATE = frozenset(
    {"last_epoch", "_step_count", "base_lrs", "_last_lr", "_get_lr_called_within_step", "_is_initial", "verbose"}
)


def classify(name: str) -> str:
    """``architecture``, ``optimizer`` or ``other`` (see the module docstring)."""
    if name in ARCHITECTURE:
        return "architecture"
    return "optimizer" if OPTIMIZER.search(name) else "other"


def plain(value: Any) -> Any:
    """A comparable plain value: mappings (and jsonargparse Namespaces) as dicts, sequences as lists."""
    if hasattr(value, "as_dict"):
        value = value.as_dict()
    if isinstance(value, Mapping):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [plain(v) for v in value]
    return value


def changed_settings(checkpoint_hparams: Mapping[str, Any], model_hparams: Mapping[str, Any]) -> dict[str, tuple]:
    """``{name: (checkpoint's value, config's value)}`` for every hyperparameter both have that differs."""
    return {
        name: (checkpoint_hparams[name], model_hparams[name])
        for name in sorted(checkpoint_hparams.keys() & model_hparams.keys())
        if not name.startswith("_") and plain(checkpoint_hparams[name]) != plain(model_hparams[name])
    }


def check_resume(model: L.LightningModule, checkpoint: Mapping[str, Any], path: Any) -> dict[str, tuple]:
    """Apply the rule to a ``fit --ckpt_path`` run: stop on a changed architecture, warn about the rest.

    Returns:
        The changed optimizer settings (for ``ResumeSettings``).

    Raises:
        ConfigError: an architecture setting differs; the message names each with both values.
    """
    changes = changed_settings(checkpoint.get("hyper_parameters") or {}, dict(getattr(model, "hparams", {}) or {}))
    if not changes:
        return {}
    arch = {k: v for k, v in changes.items() if classify(k) == "architecture"}
    if arch:
        listed = "; ".join(f"{k}: checkpoint {old!r}, config {new!r}" for k, (old, new) in arch.items())
        raise ConfigError(
            f"resuming from {path}: the architecture differs from the checkpoint's ({listed}). A resume keeps the "
            "checkpoint's model: use its run's config.yaml (or drop those settings), or start a new run without "
            "--ckpt_path."
        )
    rank_zero_warn(
        f"resuming from {path} with settings that differ from the checkpoint's; they take effect: "
        + "; ".join(f"{k}: {old!r} -> {new!r} ({classify(k)})" for k, (old, new) in changes.items())
    )
    return {k: v for k, v in changes.items() if classify(k) == "optimizer"}


def epoch_counted_again(checkpoint: Mapping[str, Any], max_steps: int | None, max_epochs: int | None) -> str | None:
    """Why a resumed fit will train one epoch fewer than ``max_epochs`` asks for, or ``None``.

    Lightning (2.6) treats a fit bounded by ``max_steps`` as iteration-based: resumed from a checkpoint written at
    an epoch's end (epoch ``processed`` but not yet ``completed``, which is where ``last.ckpt`` is saved), it
    restarts *on* that epoch's end, runs its ``on_train_epoch_end`` hooks again and counts the epoch a second
    time. Training goes on by steps, but when ``max_epochs`` binds too the fit stops one epoch early, and it stops
    at once when the checkpoint's epoch was the last but one (seen: max_epochs 1 -> 2, max_steps 2 -> 4 trained 0
    steps). A fit bounded by ``max_epochs`` alone resumes exactly.

    Args:
        checkpoint: the checkpoint's contents (its ``loops`` entry is read).
        max_steps: the resumed trainer's ``max_steps`` (-1 or ``None``: not bounded by steps).
        max_epochs: the resumed trainer's ``max_epochs`` (-1 or ``None``: not bounded by epochs).
    """
    if max_steps in (None, -1) or max_epochs in (None, -1):
        return None
    try:
        epochs = checkpoint["loops"]["fit_loop"]["epoch_progress"]["current"]
        started, processed, completed = int(epochs["started"]), int(epochs["processed"]), int(epochs["completed"])
    except (KeyError, TypeError, ValueError):
        return None
    if not (started == processed and completed == processed - 1):  # not written at an epoch's end
        return None
    left = max(max_epochs - processed, 0)
    return (
        f"the checkpoint ends epoch {processed - 1}; with max_steps={max_steps} set, Lightning resumes it as "
        f"iteration-based training and counts that epoch again, so this fit trains {max(left - 1, 0)} more "
        f"epoch(s) (and at most max_steps), not {left}. For all {left}, resume with --trainer.max_epochs "
        f"{max_epochs + 1}, or --trainer.max_epochs -1 to bound the fit by max_steps alone."
    )


def _optimizers_and_schedulers(configured: Any) -> tuple[list[torch.optim.Optimizer], list[Any]]:
    """The optimizers and schedulers of any return value of ``configure_optimizers`` that Lightning accepts."""
    if configured is None:
        return [], []
    if isinstance(configured, torch.optim.Optimizer):
        return [configured], []
    items = [configured] if isinstance(configured, Mapping) else list(configured)
    if len(items) == 2 and all(isinstance(i, (list, tuple)) for i in items):
        optimizers, schedulers = list(items[0]), list(items[1])
    else:
        optimizers, schedulers = [], []
        for item in items:
            if isinstance(item, Mapping):
                optimizers.append(item["optimizer"])
                if item.get("lr_scheduler") is not None:
                    schedulers.append(item["lr_scheduler"])
            else:
                optimizers.append(item)
    return optimizers, [s["scheduler"] if isinstance(s, Mapping) else s for s in schedulers]


class ResumeSettings(Callback):
    """Make changed optimizer and scheduler settings take effect on a resumed run (see the module docstring).

    At the start of training (after Lightning restored the optimizer states) the model's ``configure_optimizers``
    is called twice, with the checkpoint's and with the config's values of the changed settings, and every
    param-group entry and scheduler setting where the two differ is rewritten in the restored objects.

    Args:
        changes: ``{setting: (checkpoint's value, config's value)}`` of optimizer settings.
    """

    def __init__(self, changes: Mapping[str, tuple]) -> None:
        self.changes = dict(changes)
        self.applied: list[str] = []

    def _configured(self, pl_module: L.LightningModule, values: Mapping[str, Any]) -> tuple[list, list]:
        saved = {k: pl_module.hparams[k] for k in values}
        # injected optimizers and schedules (issue 21) live as plain attributes of the same name as well
        attributes = {k: vars(pl_module)[k] for k in values if k in vars(pl_module)}
        try:
            pl_module.hparams.update(values)
            for key in attributes:
                setattr(pl_module, key, values[key])
            return _optimizers_and_schedulers(pl_module.configure_optimizers())
        finally:
            pl_module.hparams.update(saved)
            for key, value in attributes.items():
                setattr(pl_module, key, value)

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if not self.changes:
            return
        old_opts, old_scheds = self._configured(pl_module, {k: old for k, (old, _) in self.changes.items()})
        new_opts, new_scheds = self._configured(pl_module, {k: new for k, (_, new) in self.changes.items()})
        for i, (restored, old, new) in enumerate(zip(trainer.optimizers, old_opts, new_opts, strict=False)):
            for group, old_group, new_group in zip(
                restored.param_groups, old.param_groups, new.param_groups, strict=False
            ):
                for key, value in new_group.items():
                    if key in ("params", "initial_lr") or plain(old_group.get(key)) == plain(value):
                        continue
                    if key == "lr" and old_group.get(key):  # keep the schedule's progress
                        group["lr"] = group["lr"] * value / old_group["lr"]
                        if "initial_lr" in group:
                            group["initial_lr"] = value
                    else:
                        group[key] = value
                    self.applied.append(f"optimizer {i} {key}: {old_group.get(key)!r} -> {group[key]!r}")
        configs = trainer.lr_scheduler_configs
        for config, old, new in zip(configs, old_scheds, new_scheds, strict=False):
            old_state, new_state = old.state_dict(), new.state_dict()
            for key, value in new_state.items():
                if key not in SCHEDULER_STATE and plain(old_state.get(key)) != plain(value):
                    setattr(config.scheduler, key, value)
                    self.applied.append(f"scheduler {key}: {old_state.get(key)!r} -> {value!r}")
            if hasattr(config.scheduler, "base_lrs"):
                config.scheduler.base_lrs = [
                    g.get("initial_lr", g["lr"]) for g in config.scheduler.optimizer.param_groups
                ]

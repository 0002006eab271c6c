"""Optimizers and learning-rate schedules chosen by class path: the models' ``optimizer``/``lr_scheduler`` arguments.

Every model takes its optimizer(s) and schedule(s) as arguments of Lightning's ``OptimizerCallable`` /
``LRSchedulerCallable`` types (Lightning's recommendation for models with several optimizers, and the same rule for
models with one): in YAML and on the command line a class path with its ``init_args``,
``--model.init_args.optimizer torch.optim.AdamW --model.init_args.optimizer.lr 3e-4``; in Python a class or any
callable (``functools.partial(torch.optim.SGD, lr=0.1)``) or such a class-path dict. The defaults are class-path
dicts, written as in a config, so ``--print_config`` shows the numbers the model trains with. See
``docs/optimizers.md``.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import torch
from lightning.pytorch.cli import LRSchedulerCallable, OptimizerCallable

from betavae.errors import ConfigError
from betavae.models.injection import build_part

#: a class-path dict (``{"class_path": ..., "init_args": {...}}``) or a callable that builds the object
OptimizerSpec = OptimizerCallable | Mapping[str, Any]
SchedulerSpec = LRSchedulerCallable | Mapping[str, Any]

#: the study's optimizer (AntixK PyTorch-VAE): Adam at 0.005, no weight decay
STUDY_OPTIMIZER: Mapping[str, Any] = {"class_path": "torch.optim.Adam", "init_args": {"lr": 0.005, "weight_decay": 0.0}}
#: the study's schedule: the rate times 0.95 after every epoch
STUDY_LR_SCHEDULER: Mapping[str, Any] = {
    "class_path": "torch.optim.lr_scheduler.ExponentialLR",
    "init_args": {"gamma": 0.95},
}


def build_optimizer(spec: OptimizerSpec, params: Iterable[torch.nn.Parameter], name: str = "optimizer") -> Any:
    """The optimizer ``spec`` describes, over ``params``.

    Raises:
        ConfigError: ``spec`` is neither a callable nor a class-path dict, or does not build an optimizer.
    """
    optimizer = build_part(spec, list(params), name=name)
    if not isinstance(optimizer, torch.optim.Optimizer):
        raise ConfigError(f"{name} must build a torch.optim.Optimizer, got {type(optimizer).__name__}")
    return optimizer


def build_scheduler(spec: SchedulerSpec | None, optimizer: torch.optim.Optimizer, name: str = "lr_scheduler") -> Any:
    """The schedule ``spec`` describes, on ``optimizer``; ``None`` for a constant rate."""
    return None if spec is None else build_part(spec, optimizer, name=name)


def scheduler_config(scheduler: Any, monitor: str = "val/loss") -> dict[str, Any]:
    """Lightning's ``lr_scheduler`` entry: stepped once per epoch (the study's ExponentialLR); a
    ``ReduceLROnPlateau`` watches ``monitor``."""
    config: dict[str, Any] = {"scheduler": scheduler, "interval": "epoch"}
    if isinstance(scheduler, torch.optim.lr_scheduler.ReduceLROnPlateau):
        config["monitor"] = monitor
    return config


def step_schedulers(schedulers: Any, metrics: Any) -> None:
    """One epoch's step of each schedule of a manually optimized model (``LightningModule.lr_schedulers()``:
    one, a list, or ``None``); ``ReduceLROnPlateau`` steps on ``metrics["val/loss"]``."""
    for scheduler in schedulers if isinstance(schedulers, list) else [schedulers]:
        if scheduler is None:
            continue
        if isinstance(scheduler, torch.optim.lr_scheduler.ReduceLROnPlateau):
            scheduler.step(metrics["val/loss"])
        else:
            scheduler.step()

"""Every experiment config's model as built: a hash of its initial weights (seed 42), its optimizers' settings and
its schedules, one line per config. Run it at two commits from the repository root and diff the outputs to show
that a refactoring builds the same models (issue 21: the same 46 lines before and after)::

    PYTHONPATH=. python scripts/compare_config_models.py > after.txt
"""

from __future__ import annotations

import hashlib
import importlib
import warnings
from pathlib import Path
from typing import Any

import torch
import yaml


def import_class(class_path: str) -> Any:
    module, _, name = class_path.rpartition(".")
    return getattr(importlib.import_module(module), name)


def factory(spec: dict) -> Any:
    """A network factory of a class-path dict: the model fills in the leading shape arguments."""
    cls, init = import_class(spec["class_path"]), spec.get("init_args") or {}
    return lambda *args: cls(*args, **init)


def optimizers_of(conf: Any) -> tuple[list, list]:
    if isinstance(conf, dict):
        return [conf["optimizer"]], [conf["lr_scheduler"]["scheduler"]]
    if isinstance(conf, tuple):
        return list(conf[0]), [s["scheduler"] for s in conf[1]]
    return (list(conf), []) if isinstance(conf, list) else ([conf], [])


def describe(path: Path) -> str | None:
    config = yaml.safe_load(path.read_text())
    if not isinstance(config, dict) or "model" not in config:
        return None
    args = dict(config["model"].get("init_args") or {})
    for key in ("net", "generator", "discriminator"):  # injected as callables, as the CLI does
        if isinstance(args.get(key), dict):
            args[key] = factory(args[key])
    if isinstance(args.get("corruption"), dict):
        args["corruption"] = import_class(args["corruption"]["class_path"])(**args["corruption"].get("init_args", {}))
    data = config["data"]["init_args"]
    torch.manual_seed(42)
    model = import_class(config["model"]["class_path"])(
        in_channels=data.get("channels", 3), image_size=data.get("image_size", 64), **args
    )
    optimizers, schedulers = optimizers_of(model.configure_optimizers())
    weights = hashlib.sha256(b"".join(p.detach().numpy().tobytes() for p in model.parameters())).hexdigest()[:12]
    groups = [[{k: v for k, v in g.items() if k != "params"} for g in o.param_groups] for o in optimizers]
    kinds = [type(o).__name__ for o in optimizers]
    schedules = [(type(s).__name__, getattr(s, "gamma", None)) for s in schedulers]
    return f"{path.name} {weights} {kinds} {groups} {schedules}"


if __name__ == "__main__":
    warnings.filterwarnings("ignore")
    for config_path in sorted(Path("configs").glob("*.yaml")):
        if (line := describe(config_path)) is not None:
            print(line)

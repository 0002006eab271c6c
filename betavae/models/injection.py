"""Building an injected part (a network, an optimizer, a schedule) from what a model was given.

In YAML and on the command line a part is a class path with its ``init_args``, which jsonargparse turns into a
callable; in Python it may be that callable (a class, ``functools.partial(...)``), or the same class-path dict a
config holds, which also keeps the model's hyperparameters plain data.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from lightning.pytorch.cli import instantiate_class

from betavae.errors import ConfigError


def build_part(spec: Any, *args: Any, name: str) -> Any:
    """``spec(*args)``, or the class of a class-path dict ``spec`` built with ``*args`` and its ``init_args``.

    Raises:
        ConfigError: ``spec`` is neither a callable nor a class-path dict (the message names ``name``).
    """
    if isinstance(spec, Mapping):
        if "class_path" not in spec:
            raise ConfigError(f"{name} must name its class: {{class_path: ..., init_args: {{...}}}}, got {dict(spec)}")
        return instantiate_class(
            args, {"class_path": spec["class_path"], "init_args": dict(spec.get("init_args") or {})}
        )
    if callable(spec):
        return spec(*args)
    raise ConfigError(f"{name} must be a class path (with its init_args) or a callable, got {spec!r}")

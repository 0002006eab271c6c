"""Argument checks shared by the networks: every size a positive integer, said by name."""

from __future__ import annotations

from collections.abc import Sequence

from betavae.errors import ConfigError


def check_positive(**values: int | Sequence[int]) -> None:
    """Raise a ``ConfigError`` naming the first argument that is not a positive integer; for a sequence
    (``hidden_channels``) the first element that is not, e.g. ``hidden_channels[1]``."""
    for name, value in values.items():
        if isinstance(value, Sequence):
            for i, item in enumerate(value):
                if int(item) < 1:
                    raise ConfigError(f"{name}[{i}] must be a positive integer, got {item} ({name}={list(value)})")
        elif int(value) < 1:
            raise ConfigError(f"{name} must be a positive integer, got {value}")

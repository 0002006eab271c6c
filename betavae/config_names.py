"""Config files by name, and a run's own config for the commands that score a checkpoint.

``--config`` takes a path, or a name under ``configs/`` (``quickstart.yaml``, ``quickstart``,
``trainer/ddp_4gpu.yaml``), looked up in ``./configs`` and in the configs shipped with the package.
``evaluate`` and ``traverse`` without ``--config`` take the ``config.yaml`` of the checkpoint's run.
"""

from __future__ import annotations

from pathlib import Path

import yaml
from lightning.pytorch.utilities import rank_zero_info

import betavae
from betavae.checkpoints import check_checkpoint
from betavae.errors import ConfigError
from betavae.run_folders import run_dir_of

CONFIG_FLAGS = ("--config", "-c")
RUN_COMMANDS = ("evaluate", "traverse", "explore")  # subcommands that default to the checkpoint's run config


def config_dirs() -> list[Path]:
    """Where bare config names are looked up: ``./configs``, then the package's own configs."""
    package = Path(betavae.__file__).resolve().parent
    dirs = [Path.cwd() / "configs", package / "configs", package.parent / "configs"]
    return list(dict.fromkeys(d for d in dirs if d.is_dir()))


def resolve_config(value: str) -> str:
    """A ``--config`` value as given if that file exists, else the matching file under a config dir.

    Raises:
        FileNotFoundError: nothing matches; the message lists where it looked and what exists.
    """
    if Path(value).expanduser().is_file() or value.lstrip().startswith(("{", "---")):
        return value
    names = [value] if Path(value).suffix else [value, f"{value}.yaml"]
    tried = [Path(value)]
    for folder in config_dirs():
        for name in names:
            candidate = folder / name
            tried.append(candidate)
            if candidate.is_file():
                return str(candidate)
    available = sorted({str(p.relative_to(d)) for d in config_dirs() for p in d.rglob("*.yaml")})
    raise FileNotFoundError(
        f"config {value!r} not found; looked at: {', '.join(map(str, tried))}. "
        f"Available configs: {', '.join(available) or 'none'}"
    )


def check_config_file(path: str) -> str:
    """``path`` if it is a config file whose top level is a mapping of sections.

    Raises:
        ConfigError: the file is empty, not YAML, or its top level is a list or a plain value; the message
            names the file and what the top level must be.
    """
    file = Path(path).expanduser()
    if not file.is_file():
        return path  # inline YAML (``--config '{...}'``): jsonargparse reads it
    must = "a config's top level must be a mapping of sections, e.g. `model:`, `data:`, `trainer:`"
    try:
        content = yaml.safe_load(file.read_text())
    except (yaml.YAMLError, UnicodeDecodeError) as err:
        raise ConfigError(f"config file {file} is not valid YAML ({' '.join(str(err).split())})") from None
    if content is None:
        raise ConfigError(f"config file {file} is empty; {must}")
    if not isinstance(content, dict):
        raise ConfigError(f"config file {file} holds a {type(content).__name__} at its top level; {must}")
    return path


def resolve_config_args(args: list[str]) -> list[str]:
    """Rewrite every ``--config X`` / ``--config=X`` / ``-c X`` in ``args`` with ``resolve_config``, and check
    each file's top level (``check_config_file``)."""
    out = list(args)
    for i, arg in enumerate(out):
        if arg in CONFIG_FLAGS and i + 1 < len(out):
            out[i + 1] = check_config_file(resolve_config(out[i + 1]))
        elif arg.startswith("--config="):
            out[i] = "--config=" + check_config_file(resolve_config(arg.split("=", 1)[1]))
    return out


def option_value(args: list[str], flag: str) -> str | None:
    """The value of ``flag`` in ``args`` (``--flag X`` or ``--flag=X``), or ``None``."""
    for i, arg in enumerate(args):
        if arg == flag and i + 1 < len(args):
            return args[i + 1]
        if arg.startswith(flag + "="):
            return arg.split("=", 1)[1]
    return None


def with_run_config(args: list[str]) -> list[str]:
    """``evaluate`` / ``traverse``: configs moved before the other options (a run's config.yaml holds
    ``ckpt_path: null``), and without ``--config`` the checkpoint's run ``config.yaml`` added.

    Raises:
        MissingFileError: the checkpoint does not exist (before any word about its run's config).
        CheckpointError: it is not a readable checkpoint.
        FileNotFoundError: no config given, no ``--model`` either, and the run has no ``config.yaml``.
    """
    if not args or args[0] not in RUN_COMMANDS:
        return args
    configs, rest, i = [], [], 1
    while i < len(args):  # configs first, so that --ckpt_path and other flags override them in any order
        if args[i] in CONFIG_FLAGS and i + 1 < len(args):
            configs += args[i : i + 2]
            i += 2
        else:
            (configs if args[i].startswith("--config=") else rest).append(args[i])
            i += 1
    if configs or any(a.startswith("--model") for a in rest):
        return [args[0], *configs, *rest]
    ckpt = option_value(rest, "--ckpt_path")
    if ckpt is None:
        return args
    if not Path(ckpt).expanduser().exists():  # a missing file says so, rather than that its run has no config
        check_checkpoint(ckpt)
    config = run_dir_of(ckpt) / "config.yaml"
    if not config.is_file():
        check_checkpoint(ckpt)  # a broken file says so first; a good one is checked (once) by the CLI
        raise FileNotFoundError(
            f"{args[0]}: no --config given and the checkpoint's run has no {config}; pass the run's config with "
            "--config FILE (the model is rebuilt from the checkpoint, the data from the config)"
        )
    rank_zero_info(f"{args[0]}: using the run's config {config}")
    return [args[0], "--config", str(config), *args[1:]]

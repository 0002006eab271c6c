"""``python -m betavae`` / ``betavae``: LightningCLI with subclass mode for models and data.

Any ``AutoencoderModule`` subclass is a model and any ``ImageDataModule`` subclass a data module:
the class path in YAML is the registry. The data's channels, image size and normalization are linked
into the model when both are instantiated, so they are written once, in the data section.

Beyond LightningCLI itself:

- ``--config NAME`` accepts a path, or a name under ``configs/`` (``quickstart.yaml``, ``quickstart``,
  ``trainer/ddp_4gpu.yaml``), looked up in ``./configs`` and in the configs shipped with the package.
- Every run gets the forced callbacks ``checkpoint`` (``last.ckpt`` and the best by ``val/loss``),
  ``images`` (reconstruction and sample grids) and ``curves`` (loss curves); each is configurable
  under its key, e.g. ``--checkpoint.save_top_k 3``.
- ``fit --ckpt_path last`` resumes from the newest ``last*.ckpt`` of the experiment, in any of its
  version folders, not only the new run's own (empty) folder.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from jsonargparse import Namespace
from lightning.pytorch.callbacks import ModelCheckpoint, RichProgressBar
from lightning.pytorch.cli import ArgsType, LightningArgumentParser, LightningCLI
from lightning.pytorch.loggers import CSVLogger, TensorBoardLogger
from lightning.pytorch.utilities import rank_zero_info, rank_zero_warn

import betavae
from betavae.callbacks import ImageGrids, LossCurves
from betavae.data import ImageDataModule
from betavae.models import AutoencoderModule

CONFIG_FLAGS = ("--config", "-c")


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


def resolve_config_args(args: list[str]) -> list[str]:
    """Rewrite every ``--config X`` / ``--config=X`` / ``-c X`` in ``args`` with ``resolve_config``."""
    out = list(args)
    for i, arg in enumerate(out):
        if arg in CONFIG_FLAGS and i + 1 < len(out):
            out[i + 1] = resolve_config(out[i + 1])
        elif arg.startswith("--config="):
            out[i] = "--config=" + resolve_config(arg.split("=", 1)[1])
    return out


def find_last_checkpoint(trainer: Any) -> str | None:
    """The newest ``last*.ckpt`` under the experiment folder of the trainer's first logger."""
    logger = trainer.loggers[0] if trainer.loggers else None
    if isinstance(logger, (CSVLogger, TensorBoardLogger)):
        root = Path(logger.root_dir)  # save_dir/name, holding version_0, version_1, ...
    else:
        root = Path(trainer.default_root_dir)
    candidates = [p for p in root.glob("**/last*.ckpt") if p.is_file()] if root.is_dir() else []
    return str(max(candidates, key=lambda p: p.stat().st_mtime)) if candidates else None


class BetaVAECLI(LightningCLI):
    """The project's LightningCLI: argument links, forced callbacks, config names, ``last`` resume."""

    def __init__(self, args: ArgsType = None, **kwargs: Any) -> None:
        kwargs.setdefault("save_config_kwargs", {"overwrite": True})
        # a misspelt option is an error naming it, never silently expanded to a similar one
        no_abbrev = {"allow_abbrev": False}
        kwargs.setdefault("parser_kwargs", {**no_abbrev, **{name: no_abbrev for name in self.subcommands()}})
        super().__init__(
            AutoencoderModule,
            ImageDataModule,
            subclass_mode_model=True,
            subclass_mode_data=True,
            args=args,
            **kwargs,
        )

    def add_arguments_to_parser(self, parser: LightningArgumentParser) -> None:
        # data shapes and normalization flow into the model: written once, in the data section
        for source, target in (
            ("data.num_channels", "model.init_args.in_channels"),
            ("data.image_size", "model.init_args.image_size"),
            ("data.mean", "model.init_args.mean"),
            ("data.std", "model.init_args.std"),
        ):
            parser.link_arguments(source, target, apply_on="instantiate")

        parser.add_lightning_class_args(ModelCheckpoint, "checkpoint")
        parser.set_defaults(
            {
                "checkpoint.monitor": "val/loss",
                "checkpoint.mode": "min",
                "checkpoint.save_last": True,
                "checkpoint.save_top_k": 1,
                "checkpoint.filename": "best-epoch={epoch:03d}-step={step}",
                "checkpoint.auto_insert_metric_name": False,
            }
        )
        parser.add_lightning_class_args(ImageGrids, "images")
        parser.add_lightning_class_args(LossCurves, "curves")
        parser.add_lightning_class_args(RichProgressBar, "progress_bar")
        parser.set_defaults({"trainer.default_root_dir": "runs"})

    def parse_arguments(self, parser: LightningArgumentParser, args: ArgsType) -> None:
        if args is None:
            args = sys.argv[1:]
        if isinstance(args, (dict, Namespace)):
            self.config = parser.parse_object(args)
            return
        try:
            args = resolve_config_args(list(args))
        except FileNotFoundError as err:
            parser.error(str(err))
        self.config = parser.parse_args(args)

    def before_fit(self) -> None:
        config = self.config_init[self.subcommand]
        if config.get("ckpt_path") != "last":
            return
        found = find_last_checkpoint(self.trainer)
        if found is None:
            rank_zero_warn("--ckpt_path last: no last checkpoint of this experiment yet; training from scratch.")
            config["ckpt_path"] = None
        else:
            rank_zero_info(f"--ckpt_path last: resuming from {found}")
            config["ckpt_path"] = found


def main(args: ArgsType = None) -> None:
    """Entry point of ``python -m betavae`` and the ``betavae`` console script."""
    BetaVAECLI(args=args)

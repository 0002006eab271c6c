"""``python -m betavae`` / ``betavae``: LightningCLI with subclass mode for models and data.

Any ``AutoencoderModule`` subclass is a model and any ``ImageDataModule`` subclass a data module:
the class path in YAML is the registry. The data's channels, image size and normalization are linked
into the model when both are instantiated, so they are written once, in the data section.

Beyond LightningCLI itself:

- ``--config NAME`` accepts a path, or a name under ``configs/`` (``quickstart.yaml``, ``quickstart``,
  ``trainer/ddp_4gpu.yaml``), looked up in ``./configs`` and in the configs shipped with the package.
- Every run gets the forced callbacks ``checkpoint`` (``last.ckpt`` and the best by ``val/loss``),
  ``grids`` (reconstruction and sample grids), ``curves`` (loss curves), ``metrics`` (``val/psnr``,
  ``val/ssim``), ``traversal`` (latent traversals) and ``fid`` (``val/fid``, ``val/kid``; off unless
  ``fid.every_n_epochs`` is set); each is configurable under its key, e.g. ``--checkpoint.save_top_k 3``.
- ``fit --ckpt_path last`` resumes from the newest ``last*.ckpt`` of the experiment, in any of its
  version folders, not only the new run's own (empty) folder.
- W&B runs get the same comparison keys (dataset, variant, β, kld_weight, latent size), a group per
  dataset, tags like ``beta10`` and an id kept in the run directory, so resumed and requeued runs
  continue their W&B run (``betavae.tracking``).
- ``evaluate`` and ``traverse`` are subcommands like ``fit`` (methods of ``BetaVAETrainer``, same config
  system); without ``--config`` they take the ``config.yaml`` of the checkpoint's run.
- ``report RUN_DIR...`` and ``prefetch`` need no model: plain jsonargparse commands, dispatched by ``main``.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from jsonargparse import ArgumentParser, Namespace
from lightning.pytorch import Trainer
from lightning.pytorch.callbacks import Callback, ModelCheckpoint, RichProgressBar
from lightning.pytorch.cli import ArgsType, LightningArgumentParser, LightningCLI
from lightning.pytorch.loggers import CSVLogger, TensorBoardLogger
from lightning.pytorch.utilities import rank_zero_info, rank_zero_warn

import betavae
from betavae.callbacks import FID, ImageGrids, LatentTraversal, LossCurves, ReconstructionMetrics
from betavae.callbacks.fid import prefetch
from betavae.data import ImageDataModule
from betavae.evaluation import evaluate_checkpoint, report, run_dir_of, traverse_checkpoint
from betavae.models import AutoencoderModule
from betavae.tracking import prepare_wandb

CONFIG_FLAGS = ("--config", "-c")
RUN_COMMANDS = ("evaluate", "traverse")  # subcommands that default to the checkpoint's run config
DESCRIPTION = (
    "betavae: train and evaluate autoencoders. Besides the subcommands below: `report RUN_DIR...` (one table "
    "across runs: Markdown, CSV, bar charts) and `prefetch` (download the FID network's weights); see "
    "`python -m betavae report --help`."
)


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
    config = run_dir_of(ckpt) / "config.yaml"
    if not config.is_file():
        raise FileNotFoundError(
            f"{args[0]}: no --config given and the checkpoint's run has no {config}; pass the run's config with "
            "--config FILE (the model is rebuilt from the checkpoint, the data from the config)"
        )
    rank_zero_info(f"{args[0]}: using the run's config {config}")
    return [args[0], "--config", str(config), *args[1:]]


def find_last_checkpoint(trainer: Any) -> str | None:
    """The newest ``last*.ckpt`` under the experiment folder of the trainer's first logger."""
    logger = trainer.loggers[0] if trainer.loggers else None
    if isinstance(logger, (CSVLogger, TensorBoardLogger)):
        root = Path(logger.root_dir)  # save_dir/name, holding version_0, version_1, ...
    else:
        root = Path(trainer.default_root_dir)
    candidates = [p for p in root.glob("**/last*.ckpt") if p.is_file()] if root.is_dir() else []
    return str(max(candidates, key=lambda p: p.stat().st_mtime)) if candidates else None


class BetaVAETrainer(Trainer):
    """Lightning's ``Trainer`` plus the ``evaluate`` and ``traverse`` subcommands.

    LightningCLI takes a subcommand's options from the trainer method of that name, so these two get
    the same config system as ``fit`` (``--config``, ``--ckpt_path``, the model and data sections);
    their settings for FID and traversals are those of the run's ``fid`` and ``traversal`` callbacks.
    """

    def _callback(self, kind: type[Callback]) -> Any:
        return next((c for c in self.callbacks if isinstance(c, kind)), None)

    def evaluate(
        self,
        model: AutoencoderModule,
        datamodule: ImageDataModule,
        ckpt_path: str,
        images: str | None = None,
        crop_size: int | None = None,
        output_dir: str | None = None,
        weights_only: bool | None = None,
    ) -> dict[str, Any]:
        """Score a checkpoint for the study's table: mean SSIM and PSNR, FID of prior samples.

        Writes JSON and a Markdown row (dataset, β, SSIM, PSNR dB, FID, n, FID samples / reference).
        FID uses the ``fid`` settings (2,400 samples against the validation split by default).

        Args:
            ckpt_path: The checkpoint; without --config its run's config.yaml supplies the data.
            images: A folder of images the model never saw (the study used photos from outside the
                training set), scored instead of the validation split.
            crop_size: Center crop (source pixels) of those images before resizing to the model's size.
            output_dir: Where the JSON and Markdown go; default: evaluation/ in the checkpoint's run folder.
            weights_only: As for fit: ``None``/``True`` loads only tensors; ``False`` unpickles anything
                (trusted files only).
        """
        fid = self._callback(FID)
        result = evaluate_checkpoint(
            model,
            datamodule,
            ckpt_path,
            images,
            crop_size,
            fid,
            self.strategy.root_device,
            output_dir,
            weights_only=weights_only is not False,
        )
        if self.is_global_zero:
            print(result["markdown"])
            scored = result["evaluated_on"] if result["n"] is None else f"n = {result['n']} ({result['evaluated_on']})"
            if result.get("psnr_input") is not None:
                scored += f"; the corrupted input: PSNR {result['psnr_input']:.2f} dB, SSIM {result['ssim_input']:.3f}"
            features = f", features: {result['fid_feature_extractor']}" if result.get("fid") is not None else ""
            print(
                f"{scored}; FID on {result['fid_num_samples'] or 0} samples "
                f"({result['fid_note'] or result['fid_reference']}{features}); "
                f"seconds: {result['seconds']}\nwrote {', '.join(result['files'])}"
            )
        return result

    def traverse(
        self,
        model: AutoencoderModule,
        datamodule: ImageDataModule,
        ckpt_path: str,
        dims: list[int] | str | None = None,
        image: str | None = None,
        top_k: int | None = None,
        crop_size: int | None = None,
        output_dir: str | None = None,
        weights_only: bool | None = None,
    ) -> dict[str, Any]:
        """The study's manipulation figure: chosen latent dimensions swept over [-3, 3] (PNG and GIF).

        Rows are the dimensions (labelled with their mean KL on the validation split), columns the
        values; one panel starts from the reference image's μ, one from z = 0. Span, steps and the
        relative mode come from the ``traversal`` settings.

        Args:
            ckpt_path: The checkpoint; without --config its run's config.yaml supplies the data.
            dims: Latent dimensions, e.g. 11,16,31; default: the top_k with the largest mean KL.
            image: An image file as the reference; default: the first validation image.
            top_k: Number of dimensions when --dims is not given; default: traversal.top_k.
            crop_size: Center crop (source pixels) of --image before resizing to the model's size.
            output_dir: Where the files go; default: evaluation/ in the checkpoint's run folder.
            weights_only: As for fit: ``None``/``True`` loads only tensors; ``False`` unpickles anything
                (trusted files only).
        """
        record = traverse_checkpoint(
            model,
            datamodule,
            ckpt_path,
            dims=dims,
            image=image,
            top_k=top_k,
            settings=self._callback(LatentTraversal),
            crop_size=crop_size,
            device=self.strategy.root_device,
            output_dir=output_dir,
            weights_only=weights_only is not False,
        )
        if self.is_global_zero:
            kl = ", ".join(f"z{d}: {v:.3f}" for d, v in record["kl"].items())
            print(f"dims {record['dims']} (mean KL in nats: {kl})\nwrote {record['png']}, {record['gif']}")
        return record


class BetaVAECLI(LightningCLI):
    """The project's LightningCLI: argument links, forced callbacks, config names, ``last`` resume,
    and the ``evaluate`` / ``traverse`` subcommands."""

    def __init__(self, args: ArgsType = None, **kwargs: Any) -> None:
        kwargs.setdefault("save_config_kwargs", {"overwrite": True})
        kwargs.setdefault("trainer_class", BetaVAETrainer)
        # a misspelt option is an error naming it, never silently expanded to a similar one
        no_abbrev = {"allow_abbrev": False}
        kwargs.setdefault(
            "parser_kwargs",
            {**no_abbrev, "description": DESCRIPTION, **{name: no_abbrev for name in self.subcommands()}},
        )
        super().__init__(
            AutoencoderModule,
            ImageDataModule,
            subclass_mode_model=True,
            subclass_mode_data=True,
            args=args,
            **kwargs,
        )

    @staticmethod
    def subcommands() -> dict[str, set[str]]:
        """Lightning's subcommands plus ``evaluate`` and ``traverse`` (and the arguments they skip)."""
        return {
            **LightningCLI.subcommands(),
            "evaluate": {"model", "datamodule"},
            "traverse": {"model", "datamodule"},
        }

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
        parser.add_lightning_class_args(ImageGrids, "grids")
        parser.add_lightning_class_args(LossCurves, "curves")
        parser.add_lightning_class_args(ReconstructionMetrics, "metrics")
        parser.add_lightning_class_args(LatentTraversal, "traversal")
        parser.add_lightning_class_args(FID, "fid")
        parser.add_lightning_class_args(RichProgressBar, "progress_bar")
        parser.set_defaults({"trainer.default_root_dir": "runs"})

    def parse_arguments(self, parser: LightningArgumentParser, args: ArgsType) -> None:
        if args is None:
            args = sys.argv[1:]
        if isinstance(args, (dict, Namespace)):
            self.config = parser.parse_object(args)
            return
        try:
            args = resolve_config_args(with_run_config(list(args)))
        except FileNotFoundError as err:
            parser.error(str(err))
        self.config = parser.parse_args(args)

    def before_fit(self) -> None:
        config = self.config_init[self.subcommand]
        if config.get("ckpt_path") == "last":
            found = find_last_checkpoint(self.trainer)
            if found is None:
                rank_zero_warn("--ckpt_path last: no last checkpoint of this experiment yet; training from scratch.")
            else:
                rank_zero_info(f"--ckpt_path last: resuming from {found}")
            config["ckpt_path"] = found
        prepare_wandb(self.trainer, self.model, self.datamodule, config.get("ckpt_path"))


def report_command(args: list[str]) -> None:
    """``report RUN_DIR... [--output_dir DIR]``: one table across runs (see ``betavae.evaluation.report``)."""
    parser = ArgumentParser(
        prog="betavae report",
        description="One table across runs (datasets × β): results.md, results.csv and a bar chart PNG per metric "
        "(SSIM, PSNR, FID). Each run contributes what `evaluate` wrote into its evaluation/ folder, or else the "
        "last validation scores of its training log.",
    )
    parser.add_argument("run_dirs", nargs="+", type=str, help="Run folders (or experiment folders of version_*).")
    parser.add_argument("--output_dir", type=str, default="report", help="Where the report goes.")
    config = parser.parse_args(args)
    report(config.run_dirs, config.output_dir)


def prefetch_command(args: list[str]) -> None:
    """``prefetch [--path FILE]``: download the FID network's weights into the torch cache."""
    parser = ArgumentParser(prog="betavae prefetch", description=prefetch.__doc__.splitlines()[0])
    parser.add_function_arguments(prefetch)
    prefetch(**parser.parse_args(args).as_dict())


STANDALONE_COMMANDS = {"report": report_command, "prefetch": prefetch_command}


def main(args: ArgsType = None) -> None:
    """Entry point of ``python -m betavae`` and the ``betavae`` console script."""
    argv = sys.argv[1:] if args is None else args
    if isinstance(argv, (list, tuple)) and argv and argv[0] in STANDALONE_COMMANDS:
        STANDALONE_COMMANDS[argv[0]](list(argv[1:]))
        return
    BetaVAECLI(args=args)

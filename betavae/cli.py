"""``python -m betavae`` / ``betavae``: LightningCLI with subclass mode for models and data.

Any ``AutoencoderModule`` subclass is a model and any ``ImageDataModule`` subclass a data module:
the class path in YAML is the registry. The data's channels, image size and normalization are linked
into the model when both are instantiated, so they are written once, in the data section.

Beyond LightningCLI itself:

- ``--config NAME`` accepts a path, or a name under ``configs/`` (``quickstart.yaml``, ``quickstart``,
  ``trainer/ddp_4gpu.yaml``), looked up in ``./configs`` and in the configs shipped with the package.
- Every run gets the forced callbacks ``checkpoint`` (``last.ckpt`` and the best by ``val/loss``),
  ``grids`` (reconstruction and sample grids), ``curves`` (loss curves), ``metrics`` (``val/psnr``,
  ``val/ssim``), ``traversal`` (latent traversals), ``fid`` (``val/fid``, ``val/kid``; off unless
  ``fid.every_n_epochs`` is set) and ``disentanglement`` (``val/mig``, ``val/sap``, ...; off unless
  ``disentanglement.every_n_epochs`` is set); each is configurable under its key, e.g.
  ``--checkpoint.save_top_k 3``.
- ``fit --ckpt_path last`` resumes from the readable checkpoint with the largest stored global step of the
  experiment, in any of its version folders, whatever its name; a setting that differs from the checkpoint's
  takes effect or stops the run (``betavae.resume``).
- ``fit`` claims its ``version_N`` folder atomically before anything starts (``betavae.versions``).
- W&B runs get the same comparison keys (dataset, variant, β, kld_weight, latent size), a group per
  dataset, tags like ``beta10`` and an id kept in the run directory, so resumed and requeued runs
  continue their W&B run (``betavae.tracking``).
- ``evaluate`` and ``traverse`` are subcommands like ``fit`` (methods of ``BetaVAETrainer``, same config
  system); without ``--config`` they take the ``config.yaml`` of the checkpoint's run.
- ``report RUN_DIR...``, ``fid PATH_A PATH_B``, ``prefetch``, ``wandb-summary EVALUATION_JSON...`` and
  ``dashboard`` need no model: plain jsonargparse commands, dispatched by ``main``.
"""

from __future__ import annotations

import signal
import sys
from pathlib import Path
from typing import Any

import yaml
from jsonargparse import ArgumentParser, Namespace
from lightning.pytorch.callbacks import Callback, RichProgressBar
from lightning.pytorch.cli import ArgsType, LightningArgumentParser, LightningCLI, SaveConfigCallback
from lightning.pytorch.loggers import CSVLogger, TensorBoardLogger
from lightning.pytorch.plugins.io import TorchCheckpointIO
from lightning.pytorch.utilities import rank_zero_info, rank_zero_warn
from lightning.pytorch.utilities.exceptions import SIGTERMException
from lightning.pytorch.utilities.rank_zero import rank_zero_only

from betavae.callbacks import (
    FID,
    DisentanglementMetrics,
    ImageGrids,
    LatentTraversal,
    LossCurves,
    ReconstructionMetrics,
)
from betavae.checkpoints import (
    AtomicCheckpointIO,
    RunCheckpoint,
    check_fits,
    find_last_checkpoint,
)
from betavae.config_names import CONFIG_FLAGS, resolve_config_args, with_run_config
from betavae.data import ImageDataModule
from betavae.errors import BetaVAEError, debugging, known_error
from betavae.evaluation import report
from betavae.evaluation.fid_command import fid_command
from betavae.fid import prefetch
from betavae.loaded_checkpoint import LoadedCheckpoint, read_checkpoint
from betavae.models import AutoencoderModule
from betavae.models.legacy import REPLACEMENTS, legacy_flags, legacy_keys, upgrade_config, upgrade_model_args
from betavae.resume import ResumeSettings, check_resume, epoch_counted_again
from betavae.run_folders import NewRunFolders, trainer_run_dir
from betavae.tracking import configure_wandb, logger_entries, write_run_ids
from betavae.trainer import BetaVAETrainer
from betavae.versions import check_run_root, claim_logger_versions, keep_pinned_logs
from betavae.wandb_runs import log_evaluation

DESCRIPTION = (
    "betavae: train and evaluate autoencoders. Besides the subcommands below: `report RUN_DIR...` (one table "
    "across runs: Markdown, CSV, bar charts), `fid PATH_A PATH_B` (FID/KID between two image folders or .npz "
    "statistics, like pytorch-fid), `prefetch` (find, convert or download the FID network's weights) and "
    "`wandb-summary EVALUATION_JSON...` (evaluate's scores into each run's W&B summary) and "
    "`dashboard` (the W&B β-comparison view and report); see "
    "`python -m betavae report --help`. Known errors print one message and exit 1; set BETAVAE_DEBUG=1 to see "
    "their traceback too."
)
#: (data module attribute, model argument, the data setting a user sets instead)
LINKS = (
    ("data.num_channels", "in_channels", "data.init_args.channels"),
    ("data.image_size", "image_size", "data.init_args.image_size"),
    ("data.mean", "mean", "data.init_args.mean"),
    ("data.std", "std", "data.init_args.std"),
)
LIGHTNING_CKPT_NAMES = ("best", "last", "hpc", "registry")


def experiment_root(trainer_config: Namespace) -> Path:
    """Where the runs of an experiment live: ``save_dir/name`` of the first CSV or TensorBoard logger
    (holding ``version_0``, ``version_1``, ...), else the trainer's ``default_root_dir``."""
    for entry in logger_entries(trainer_config):
        if entry.class_path.rsplit(".", 1)[-1] in (CSVLogger.__name__, TensorBoardLogger.__name__):
            init = entry.get("init_args") or Namespace()
            return Path(init.get("save_dir") or ".") / (init.get("name") or "lightning_logs")
        break
    return Path(trainer_config.get("default_root_dir") or ".")


def linked_settings_given(args: list[str]) -> list[tuple[str, str]]:
    """The model arguments that come from the data (``LINKS``) but were given by hand, on the command line
    or in a ``--config`` file: (what was given, the data setting to use instead)."""
    given = []
    configs = [args[i + 1] for i, a in enumerate(args[:-1]) if a in CONFIG_FLAGS]
    configs += [a.split("=", 1)[1] for a in args if a.startswith("--config=")]
    for _, name, instead in LINKS:
        flags = (f"--model.init_args.{name}", f"--model.{name}")
        if any(a in flags or a.startswith(tuple(f + "=" for f in flags)) for a in args):
            given.append((f"--model.init_args.{name}", instead))
            continue
        for config in configs:
            try:
                text = Path(config).read_text() if Path(config).is_file() else config
                model = (yaml.safe_load(text) or {}).get("model") or {}
            except (OSError, yaml.YAMLError, AttributeError):
                continue
            init = model.get("init_args") or {} if isinstance(model, dict) else {}
            if isinstance(init, dict) and name in init or isinstance(model, dict) and name in model:
                given.append((f"model.init_args.{name} in {config}", instead))
                break
    return given


def config_values(args: list[str]) -> list[tuple[int, str]]:
    """(index in ``args``, value) of every ``--config X`` / ``-c X`` / ``--config=X``."""
    found = []
    for i, arg in enumerate(args):
        if arg in CONFIG_FLAGS and i + 1 < len(args):
            found.append((i + 1, args[i + 1]))
        elif arg.startswith("--config="):
            found.append((i, arg.split("=", 1)[1]))
    return found


def upgrade_legacy_configs(args: list[str]) -> list[str]:
    """``args`` with every ``--config`` file that names removed model arguments (``betavae.models.legacy``: a run
    written before issue 21, e.g. the ``config.yaml`` that ``evaluate`` takes from a checkpoint's run) replaced by
    its upgraded text, with a warning naming the file and what to write instead."""
    out = list(args)
    for index, value in config_values(args):
        path = Path(value)
        try:
            text = path.read_text() if path.is_file() else value
            config = yaml.safe_load(text)
        except (OSError, yaml.YAMLError):
            continue
        if not isinstance(config, dict):
            continue
        upgraded, found = upgrade_config(config)
        if not found:
            continue
        rank_zero_warn(
            f"{value} uses model arguments removed in betavae's redesign (issue 21): "
            + "; ".join(f"{k} -> {REPLACEMENTS.get(k, 'optimizer: {class_path: torch.optim...}')}" for k in found)
            + ". It was read with the same network and optimizer as:\n"
            + yaml.safe_dump({"model": upgraded["model"]}, sort_keys=False)
        )
        dumped = yaml.safe_dump(upgraded, sort_keys=False)
        out[index] = dumped if out[index] == value else f"--config={dumped}"
    return out


class RunStarted(Callback):
    """Marks the moment Lightning's setup is over and the run proper starts (fit, validate, test, predict)."""

    def __init__(self) -> None:
        self.started = False

    def _start(self, *_: Any) -> None:
        self.started = True

    on_fit_start = on_validation_start = on_test_start = on_predict_start = _start


class RunConfigCallback(SaveConfigCallback):
    """LightningCLI's ``config.yaml`` in the run directory, and there the W&B run id (``wandb_id``), once the
    run's loggers have started (so a fresh run's folder never holds a file before its logger's)."""

    def __init__(self, *args: Any, claimed: frozenset[str] = frozenset(), **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.claimed = claimed  # the version_N folders this run claimed (betavae.versions)

    def setup(self, trainer: Any, pl_module: Any, stage: str) -> None:
        # A version this run claimed is not written into config.yaml: rerunning or validating with that config
        # gets a folder of its own, as it did before folders were claimed, instead of this run's.
        unpinned = []
        loggers = (self.config.get("trainer") or Namespace()).get("logger")
        for entry in loggers if isinstance(loggers, list) else [loggers]:
            init = entry.get("init_args") if isinstance(entry, Namespace) else None
            version = init.get("version") if isinstance(init, Namespace) else None
            if version is None:
                continue
            folder = Path(init.get("save_dir") or ".") / (init.get("name") or "") / f"version_{version}"
            if str(folder) in self.claimed:
                unpinned.append((init, version))
                init.version = None
        try:
            super().setup(trainer, pl_module, stage)
        finally:
            for init, version in unpinned:
                init.version = version
        trainer_run_dir(trainer)  # on every rank: trainer.log_dir is a collective under DDP
        write_run_ids(trainer)


class BetaVAECLI(LightningCLI):
    """The project's LightningCLI: argument links, forced callbacks, config names, ``last`` resume, checked
    checkpoints, W&B run keys, and the ``evaluate`` / ``traverse`` subcommands.

    A run that fails before it starts (a missing folder, bad weights, a broken checkpoint) removes the
    folders it created (``betavae.run_folders.NewRunFolders``).
    """

    def __init__(self, args: ArgsType = None, **kwargs: Any) -> None:
        kwargs.setdefault("save_config_kwargs", {"overwrite": True})
        kwargs.setdefault("save_config_callback", RunConfigCallback)
        kwargs.setdefault("trainer_class", BetaVAETrainer)
        # a misspelt option is an error naming it, never silently expanded to a similar one
        no_abbrev = {"allow_abbrev": False}
        kwargs.setdefault(
            "parser_kwargs",
            {**no_abbrev, "description": DESCRIPTION, **{name: no_abbrev for name in self.subcommands()}},
        )
        self.run_started = RunStarted()
        self.new_folders: NewRunFolders | None = None
        self.claimed_folders: list[Path] = []  # version_N folders claimed before the trainer exists
        self.checkpoint: LoadedCheckpoint | None = None  # --ckpt_path, read once
        self.given_model: Namespace | None = None
        try:
            super().__init__(
                AutoencoderModule,
                ImageDataModule,
                subclass_mode_model=True,
                subclass_mode_data=True,
                args=args,
                **kwargs,
            )
        except BaseException:
            if self.new_folders is not None and not self.run_started.started:
                try:
                    self.new_folders.discard()
                except Exception as cleanup_error:  # never hide the run's own error behind the cleanup's
                    rank_zero_warn(f"could not remove the folders of the run that failed: {cleanup_error!r}")
            elif self.new_folders is None:  # failed before the trainer existed: only the claimed, still empty, folders
                for folder in reversed(self.claimed_folders):
                    if folder.is_dir() and not any(folder.iterdir()):
                        folder.rmdir()
            raise

    @staticmethod
    def subcommands() -> dict[str, set[str]]:
        """Lightning's subcommands plus ``evaluate`` and ``traverse`` (and the arguments they skip)."""
        return {
            **LightningCLI.subcommands(),
            "evaluate": {"model", "datamodule"},
            "traverse": {"model", "datamodule"},
            "explore": {"model", "datamodule"},
        }

    def add_arguments_to_parser(self, parser: LightningArgumentParser) -> None:
        # data shapes and normalization flow into the model: written once, in the data section
        for source, target, _ in LINKS:
            parser.link_arguments(source, f"model.init_args.{target}", apply_on="instantiate")

        parser.add_lightning_class_args(RunCheckpoint, "checkpoint")
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
        parser.add_lightning_class_args(DisentanglementMetrics, "disentanglement")
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
        except BetaVAEError:
            raise  # a missing or unreadable checkpoint: one message from main()
        except FileNotFoundError as err:
            parser.error(str(err))
        for given, instead in legacy_flags(args):
            parser.error(
                f"{given} was removed (networks and optimizers are chosen by class path now, issue 21): "
                f"use {instead}; see docs/optimizers.md."
            )
        args = upgrade_legacy_configs(args)
        for given, instead in linked_settings_given(args):
            parser.error(
                f"{given}: this model setting is linked from the data module and a value given for it would be "
                f"ignored; set {instead} instead (e.g. --{instead} VALUE)."
            )
        self.config = parser.parse_args(args)
        subcommand = self.config.get("subcommand")
        ckpt_path = self.config[subcommand].get("ckpt_path") if subcommand else None
        if ckpt_path is not None and ckpt_path not in LIGHTNING_CKPT_NAMES:
            # read once, weights-only unless the user says --weights_only false, before LightningCLI reads it
            weights_only = self.config[subcommand].get("weights_only") is not False
            self.checkpoint = read_checkpoint(ckpt_path, weights_only=weights_only)
        if subcommand == "fit":  # the user's model settings: LightningCLI replaces them with a checkpoint's
            self.given_model = self.config.fit.model.clone()

    def before_instantiate_classes(self) -> None:
        config = self.config.get(self.subcommand) if self.subcommand else self.config
        if config is None:
            return
        self.upgrade_checkpoint_hparams(config)
        config = self.config.get(self.subcommand) if self.subcommand else self.config
        if self.subcommand == "fit" and config.get("ckpt_path") == "last":
            found = find_last_checkpoint(experiment_root(config.trainer))
            if found is None:
                rank_zero_warn("--ckpt_path last: no last checkpoint of this experiment yet; training from scratch.")
            else:
                rank_zero_info(f"--ckpt_path last: resuming from {found}")
            config.ckpt_path = found
        if self.subcommand == "fit" and config.get("ckpt_path") and self.given_model is not None:
            config.model = self.given_model  # a resume keeps or refuses the settings given now (betavae.resume)
        check_run_root((config.get("trainer") or {}).get("default_root_dir"))
        if self.subcommand == "fit":  # a run of its own: version_N claimed now, atomically (betavae.versions)
            self.claimed_folders = claim_logger_versions(config.trainer)
            self.save_config_kwargs["claimed"] = frozenset(str(folder) for folder in self.claimed_folders)
            for log, kept in keep_pinned_logs(config.trainer):  # Lightning's CSVLogger would delete it
                rank_zero_warn(
                    f"kept the training log so far as {kept}: this run's {log.name} in that folder starts afresh"
                )
        configure_wandb(config)

    def upgrade_checkpoint_hparams(self, config: Namespace) -> None:
        """A checkpoint written before issue 21 (``--ckpt_path``) keeps loading: Lightning reads its hyperparameters
        into the model's config, where the removed ones (``architecture``, ``hidden_channels``, ``lr``, ...) are
        left over as ``dict_kwargs``; they are rewritten into the networks and optimizers they stand for
        (``betavae.models.legacy``), which then override the config's as any checkpoint hyperparameter does."""
        model = config.get("model")
        extra = model.get("dict_kwargs") if isinstance(model, Namespace) else None
        if not extra:
            return
        found = legacy_keys(model.class_path, extra)
        if not found:
            return
        old = {key: extra.pop(key) for key in found}
        if not extra:
            del model["dict_kwargs"]
        upgraded = upgrade_model_args(model.class_path, old)
        rank_zero_info(f"{config.get('ckpt_path')}: hyperparameters written before issue 21 read as {upgraded}")
        update = {"model": {"class_path": model.class_path, "init_args": upgraded}}
        if self.subcommand:
            update = {self.subcommand: update}
        self.config = self.parser.parse_object(update, self.config)

    def instantiate_trainer(self, **kwargs: Any) -> BetaVAETrainer:
        trainer = super().instantiate_trainer(**kwargs)
        if type(trainer.strategy.checkpoint_io) is TorchCheckpointIO:  # keep a checkpoint IO the user configured
            trainer.strategy.checkpoint_io = AtomicCheckpointIO()
        trainer.callbacks.append(self.run_started)
        return trainer

    def _check_checkpoint(self) -> None:
        """Before any subcommand: a ``ckpt_path`` must be a readable checkpoint that fits the model, and the
        run's new folders are remembered (removed again if it fails before it starts)."""
        config = self.config_init[self.subcommand]
        path = config.get("ckpt_path")
        if path is not None and path not in LIGHTNING_CKPT_NAMES:
            read = self.checkpoint if self.checkpoint is not None and self.checkpoint.is_for(path) else None
            # a path found later (--ckpt_path last), or parsed from a dict
            read = read or read_checkpoint(path, weights_only=config.get("weights_only") is not False)
            check_fits(self.model, read.contents, path)
            if self.subcommand == "fit":  # a changed setting takes effect or stops the run (betavae.resume)
                self.trainer.callbacks.append(ResumeSettings(check_resume(self.model, read.contents, path)))
                lost = epoch_counted_again(read.contents, self.trainer.max_steps, self.trainer.max_epochs)
                if lost:
                    rank_zero_warn(f"resuming from {path}: {lost}")
            if self.subcommand in ("evaluate", "traverse", "explore"):  # the command loads its weights from this read
                self.trainer.loaded_checkpoint = read
        self.checkpoint = None  # fit & co. load the file through Lightning: nothing held in memory meanwhile
        self.new_folders = NewRunFolders(self.trainer, self.claimed_folders)

    before_fit = before_validate = before_test = before_predict = _check_checkpoint
    before_evaluate = before_traverse = before_explore = _check_checkpoint


def report_command(args: list[str]) -> None:
    """``report RUN_DIR... [--output_dir DIR]``: one table across runs (see ``betavae.evaluation.report``)."""
    parser = ArgumentParser(
        prog="betavae report",
        description="One table across runs (datasets × models × β), each row naming its run and model: results.md, "
        "results.csv, study_tables.md, a bar chart PNG per metric (SSIM, PSNR, FID), each disentanglement metric "
        "against β (<metric>_vs_beta.png) and the trade-off PSNR against MIG (tradeoff_psnr_mig.png). Each run "
        "contributes what `evaluate` wrote into its evaluation/ folder, or else the last validation scores of its "
        "training log.",
    )
    parser.add_argument("run_dirs", nargs="+", type=str, help="Run folders (or experiment folders of version_*).")
    parser.add_argument("--output_dir", type=str, default="report", help="Where the report goes.")
    parser.add_argument(
        "--wandb",
        type=bool,
        default=False,
        help="Also log the table and the charts to a W&B run of their own (offline when WANDB_MODE=offline).",
    )
    parser.add_argument("--wandb_project", type=str, default="betavae", help="The W&B project of that run.")
    config = parser.parse_args(args)
    report(config.run_dirs, config.output_dir, wandb=config.wandb, wandb_project=config.wandb_project)


def prefetch_command(args: list[str]) -> None:
    """``prefetch [--download true] [--path FILE]``: find (or convert, or download) the FID network's weights."""
    parser = ArgumentParser(prog="betavae prefetch", description=prefetch.__doc__.splitlines()[0])
    parser.add_function_arguments(prefetch)
    prefetch(**parser.parse_args(args).as_dict())


def wandb_summary_command(args: list[str]) -> None:
    """``wandb-summary EVALUATION_JSON... [--project P]``: each run's evaluate scores into its W&B run."""
    parser = ArgumentParser(
        prog="betavae wandb-summary",
        description="Add the scores of `evaluate` JSON files (<run>/evaluation/last.json) to the summary of each "
        "run's W&B run (eval/mig, eval/psnr, ...), resumed by the id in its wandb_id file (betavae.wandb_runs).",
    )
    parser.add_argument("evaluations", nargs="+", type=str, help="evaluate's JSON files.")
    parser.add_argument("--project", type=str, default=None, help="The W&B project (default: the run's own).")
    config = parser.parse_args(args)
    for path in config.evaluations:
        print(f"W&B run {log_evaluation(path, config.project)}: summary eval/* from {path}")


def dashboard_command(args: list[str]) -> None:
    """``dashboard --entity E [--project P] [--group G]``: the W&B β-comparison view and report
    (``betavae.dashboard``)."""
    from betavae.dashboard import dashboard

    parser = ArgumentParser(
        prog="betavae dashboard",
        description="Build the W&B β-comparison workspace (a saved view) and report: the study's runs grouped by "
        "dataset and β; β against FID, SSIM, PSNR, KL and each disentanglement metric; PSNR against MIG; the scores "
        "over epochs; the KL-per-dimension histograms; traversals, samples and reconstructions in β order. Online it "
        "saves both and prints their URLs; offline (WANDB_MODE=offline, or no API key) it writes the specification "
        'to --spec_path and prints the command that pushes it later. Needs pip install -e ".[wandb-dashboards]".',
    )
    parser.add_function_arguments(dashboard)
    dashboard(**parser.parse_args(args).as_dict())


STANDALONE_COMMANDS = {
    "report": report_command,
    "prefetch": prefetch_command,
    "fid": fid_command,
    "wandb-summary": wandb_summary_command,
    "dashboard": dashboard_command,
}


def main(args: ArgsType = None) -> None:
    """Entry point of ``python -m betavae`` and the ``betavae`` console script.

    A known error (``betavae.errors.BetaVAEError``: config, data, checkpoint, architecture) prints its
    message alone and exits 1 (``BETAVAE_DEBUG=1`` re-raises it with its traceback); SIGTERM exits 143 after
    the checkpoint callback has saved the run and printed how to resume it; Ctrl-C (KeyboardInterrupt, e.g.
    during the disentanglement metrics of ``evaluate``) prints ``betavae <cmd>: interrupted`` and exits 130.
    """
    argv = sys.argv[1:] if args is None else args
    command = argv[0] if isinstance(argv, (list, tuple)) and argv else "betavae"
    try:
        if command in STANDALONE_COMMANDS:
            STANDALONE_COMMANDS[command](list(argv[1:]))
            return
        BetaVAECLI(args=args)
    except SIGTERMException:
        sys.exit(128 + signal.SIGTERM)
    except KeyboardInterrupt:  # Ctrl-C: one line, no traceback, the shell's status for SIGINT
        print(f"betavae {command}: interrupted", file=sys.stderr, flush=True)
        sys.exit(128 + signal.SIGINT)
    except Exception as err:
        known = known_error(err)
        if known is None or debugging():
            raise
        rank = getattr(rank_zero_only, "rank", 0) or 0
        prefix = f"[rank {rank}] " if rank else ""
        print(f"{prefix}betavae {command}: error: {known}", file=sys.stderr, flush=True)
        sys.exit(1)

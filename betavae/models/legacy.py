"""Model arguments removed by the redesign of issue 21, and how they are written now.

Before it, a VAE picked its network by name (``architecture: study | burgess``, ``hidden_channels``,
``decoder_kernel_size``) and every model had a fixed optimizer (``lr``, ``weight_decay``, ``scheduler_gamma``;
FactorVAE's ``discriminator_lr``/``discriminator_betas``; DCGAN's ``optimizer: adam | rmsprop``, ``lr``, ``betas``;
DCGAN's optimizers are now ``generator_optimizer`` and ``discriminator_optimizer``). Now the networks and optimizers
are injected by class path. ``upgrade_model_args`` rewrites the old arguments into the new ones with the same
numbers, so that runs and checkpoints written before keep loading (``betavae.cli`` applies it to a run's own
``config.yaml`` and a checkpoint's hyperparameters), and ``legacy_flags`` names old command-line options with what
to write instead.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

#: the old defaults (the code before issue 21)
OLD_STUDY_HIDDEN = [32, 64, 128, 256, 512]
OLD_OPTIMIZER = {"lr": 0.005, "weight_decay": 0.0}
OLD_SCHEDULER_GAMMA = 0.95
VAE_KEYS = ("architecture", "hidden_channels", "decoder_kernel_size")
OPTIMIZER_KEYS = ("lr", "weight_decay", "scheduler_gamma")
FACTOR_KEYS = ("discriminator_lr", "discriminator_betas")
#: every removed model argument, and what replaces it (for messages)
REPLACEMENTS = {
    "architecture": "encoder/decoder: {class_path: betavae.nets.ConvEncoder | betavae.nets.BurgessEncoder, ...}",
    "hidden_channels": "encoder.init_args.hidden_channels and decoder.init_args.hidden_channels",
    "decoder_kernel_size": "decoder.init_args.kernel_size (betavae.nets.ConvDecoder)",
    "lr": "optimizer.init_args.lr",
    "weight_decay": "optimizer.init_args.weight_decay",
    "scheduler_gamma": "lr_scheduler: {class_path: torch.optim.lr_scheduler.ExponentialLR, init_args: {gamma: ...}} "
    "(null for a constant rate)",
    "discriminator_lr": "discriminator_optimizer.init_args.lr",
    "discriminator_betas": "discriminator_optimizer.init_args.betas",
    "betas": "generator_optimizer.init_args.betas and discriminator_optimizer.init_args.betas",
}


def is_gan(class_path: str) -> bool:
    return str(class_path).rsplit(".", 1)[-1] == "DCGAN"


def legacy_keys(class_path: str, init_args: Mapping[str, Any]) -> list[str]:
    """The removed arguments among ``init_args`` (a DCGAN's ``optimizer`` counts when it is a name)."""
    keys = [k for k in (*VAE_KEYS, *OPTIMIZER_KEYS, *FACTOR_KEYS, "betas") if k in init_args]
    if is_gan(class_path) and isinstance(init_args.get("optimizer"), str):
        keys.append("optimizer")
    return keys


def _study_nets(args: dict[str, Any]) -> None:
    architecture = args.pop("architecture", "study")
    hidden = list(args.pop("hidden_channels", OLD_STUDY_HIDDEN))
    kernel = args.pop("decoder_kernel_size", 3)
    if architecture == "burgess":
        args["encoder"] = {"class_path": "betavae.nets.BurgessEncoder", "init_args": {"hidden_channels": hidden}}
        args["decoder"] = {"class_path": "betavae.nets.BurgessDecoder", "init_args": {"hidden_channels": list(hidden)}}
        return
    args["encoder"] = {"class_path": "betavae.nets.ConvEncoder", "init_args": {"hidden_channels": hidden}}
    args["decoder"] = {
        "class_path": "betavae.nets.ConvDecoder",
        "init_args": {"hidden_channels": list(hidden), "kernel_size": kernel},
    }


def _gan_optimizers(args: dict[str, Any]) -> None:
    name = args.pop("optimizer", "adam") if isinstance(args.get("optimizer"), str) else "adam"
    lr = args.pop("lr", 2e-4)
    betas = list(args.pop("betas", (0.5, 0.999)))
    if name == "rmsprop":  # Keras' RMSprop defaults, the chapter's optimizer
        spec = {"class_path": "torch.optim.RMSprop", "init_args": {"lr": lr, "alpha": 0.9, "eps": 1e-7}}
    else:
        spec = {"class_path": "torch.optim.Adam", "init_args": {"lr": lr, "betas": betas}}
    args["generator_optimizer"] = spec
    args["discriminator_optimizer"] = {"class_path": spec["class_path"], "init_args": dict(spec["init_args"])}


def upgrade_model_args(class_path: str, init_args: Mapping[str, Any]) -> dict[str, Any]:
    """``init_args`` of a model of ``class_path`` with every removed argument rewritten into the new ones, giving
    the same network and the same optimizer; arguments that are not removed ones are kept as they are."""
    args = dict(init_args)
    if not legacy_keys(class_path, args):
        return args
    if is_gan(class_path):
        _gan_optimizers(args)
        return args
    if any(k in args for k in VAE_KEYS):
        _study_nets(args)
    if "lr" in args or "weight_decay" in args:
        args["optimizer"] = {
            "class_path": "torch.optim.Adam",
            "init_args": {k: args.pop(k, OLD_OPTIMIZER[k]) for k in ("lr", "weight_decay")},
        }
    if "scheduler_gamma" in args:
        gamma = args.pop("scheduler_gamma")
        args["lr_scheduler"] = (
            None
            if gamma is None
            else {"class_path": "torch.optim.lr_scheduler.ExponentialLR", "init_args": {"gamma": gamma}}
        )
    if "discriminator_lr" in args or "discriminator_betas" in args:
        args["discriminator_optimizer"] = {
            "class_path": "torch.optim.Adam",
            "init_args": {
                "lr": args.pop("discriminator_lr", 1e-4),
                "betas": list(args.pop("discriminator_betas", (0.5, 0.9))),
            },
        }
    return args


def upgrade_config(config: Mapping[str, Any]) -> tuple[dict[str, Any], list[str]]:
    """A config dict (a run's ``config.yaml``) with its ``model`` section upgraded, and the removed keys found."""
    config = dict(config)
    model = config.get("model")
    if not isinstance(model, Mapping) or not isinstance(model.get("init_args"), Mapping):
        return config, []
    class_path = str(model.get("class_path", ""))
    found = legacy_keys(class_path, model["init_args"])
    if found:
        config["model"] = {**model, "init_args": upgrade_model_args(class_path, model["init_args"])}
    return config, found


def legacy_flags(args: list[str]) -> list[tuple[str, str]]:
    """Command-line options that name a removed model argument: (the option, what to write instead)."""
    found = []
    for arg in args:
        for prefix in ("--model.init_args.", "--model."):
            if arg.startswith(prefix):
                key = arg[len(prefix) :].split("=", 1)[0]
                if key in REPLACEMENTS:
                    found.append((arg.split("=", 1)[0], f"--model.init_args.{REPLACEMENTS[key]}"))
                break
    return found

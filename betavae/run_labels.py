"""What a run is compared by: the short dataset name of tables, W&B groups and tags (``dataset_label``), and
every comparison key (``run_keys``: dataset, variant, β, latent size, ...), from a config or live objects."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from betavae.beta_rule import model_beta


def short_name(class_path: str) -> str:
    """``betavae.models.BetaVAE`` → ``BetaVAE``."""
    return str(class_path).rsplit(".", 1)[-1]


def dataset_label(class_name: str, root: str | Path | None = None, name: str | None = None) -> str:
    """A short dataset name for tables: ``name`` if the data module has one; for a generic folder module
    (``ImageFolderDataModule``) the folder's name (``img_align_celeba``); else the class name without
    ``DataModule``, lower case (``shapes``)."""
    if name:
        return str(name)
    if root and "Folder" in class_name:
        return Path(str(root)).expanduser().name or str(root)
    short = short_name(class_name).removesuffix("DataModule")
    return (short or class_name).lower()


def datamodule_label(datamodule: Any) -> str:
    """``dataset_label`` of a data module instance (``None`` gives ``"unknown"``)."""
    if datamodule is None:
        return "unknown"
    return dataset_label(
        type(datamodule).__name__, getattr(datamodule, "root", None), getattr(datamodule, "name", None)
    )


#: hyperparameters of the comparison models that a dashboard groups by, when a model has them: BetaVAE's
#: ``loss_type``/``gamma``/``max_capacity`` (AnnealedVAE), BetaTCVAE's ``alpha``/``gamma`` (its β is the TC
#: weight), FactorVAE's ``gamma``, DIPVAE's ``dip_type``/``lambda_od``/``lambda_d``; ``gamma`` means what the
#: ``variant`` key says
WEIGHT_KEYS = ("kld_weight", "loss_type", "gamma", "max_capacity", "alpha", "dip_type", "lambda_od", "lambda_d")


def run_keys(
    model_class: str | type, model_args: Mapping[str, Any], data_class: str, data_args: Mapping[str, Any]
) -> dict[str, Any]:
    """The keys every run carries for comparisons: dataset, variant, β, latent size, image shape,
    likelihood, and the loss weights of ``WEIGHT_KEYS`` (``None`` where the model has no such weight): the
    same keys for every variant, so that a dashboard can group and filter any run by any of them.

    Args:
        model_class: The model's class, or its class name or path.
        model_args: Its init arguments (a config's ``init_args`` or a model's ``hparams``).
        data_class: The data module's class name or path.
        data_args: Its init arguments.
    """
    variant = model_class.__name__ if isinstance(model_class, type) else short_name(model_class)
    net_args = model_args.get("net")
    net_args = net_args.get("init_args", {}) if isinstance(net_args, Mapping) else {}
    keys: dict[str, Any] = {
        "dataset": dataset_label(data_class, data_args.get("root"), data_args.get("name")),
        "variant": variant,
        "beta": model_beta(model_class, model_args),
        "latent_dim": model_args.get("latent_dim", net_args.get("latent_dim")),
        "image_size": data_args.get("image_size", model_args.get("image_size")),
        "channels": data_args.get("channels", model_args.get("in_channels")),
        "likelihood": model_args.get("likelihood"),
    }
    keys.update({k: model_args.get(k) for k in WEIGHT_KEYS})  # None where the model has no such weight
    return keys


def run_info(model: Any, datamodule: Any) -> dict[str, Any]:
    """``run_keys`` of live objects: a model (its ``hparams``) and a data module."""
    hparams = dict(getattr(model, "hparams", {}) or {})
    hparams.setdefault("latent_dim", getattr(model, "latent_dim", None))
    hparams.setdefault("image_size", getattr(model, "image_size", None))
    hparams.setdefault("in_channels", getattr(model, "in_channels", None))
    data_args = {
        "root": getattr(datamodule, "root", None),
        "name": getattr(datamodule, "name", None),
        "image_size": getattr(model, "image_size", None),
        "channels": getattr(model, "in_channels", None),
    }
    data_class = type(datamodule).__name__ if datamodule is not None else "unknown"
    keys = run_keys(type(model), hparams, data_class, data_args)
    if datamodule is None:
        keys["dataset"] = "unknown"
    return keys

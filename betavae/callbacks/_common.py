"""What the evaluation callbacks share: when they are due, side-effect-free evaluation, API checks, labels."""

from __future__ import annotations

import contextlib
import inspect
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import lightning as L
import torch


def due(trainer: L.Trainer, every_n_epochs: int) -> bool:
    """Whether a callback run every ``every_n_epochs`` validation epochs runs now.

    Due on its period, on the last epoch, in a ``fast_dev_run``, and on every ``validate`` / ``test``
    call outside ``fit``.
    """
    if trainer.state.fn != "fit":
        return True
    last = trainer.max_epochs is not None and trainer.current_epoch + 1 >= trainer.max_epochs
    return (trainer.current_epoch + 1) % every_n_epochs == 0 or last or bool(trainer.fast_dev_run)


@contextlib.contextmanager
def evaluating(module: torch.nn.Module) -> Iterator[None]:
    """Eval mode and no gradients inside; the module's train/eval mode and every RNG state restored after.

    The RNG states (CPU, and the module's CUDA device) are forked, so whatever the block draws does
    not shift the training run's random stream.
    """
    was_training = module.training
    device = next(module.parameters(), torch.empty(0)).device
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []), torch.no_grad():
        module.eval()
        try:
            yield
        finally:
            module.train(was_training)


def api_problem(module: torch.nn.Module, **calls: int) -> str | None:
    """Why ``module`` cannot serve a callback, or ``None`` when it can.

    ``calls`` maps each method the callback uses to the number of positional arguments it passes
    (``sample`` also gets ``generator=`` by keyword), e.g. ``api_problem(model, encode=1, decode=1)``.
    """
    name_of = type(module).__name__
    for name, n_args in calls.items():
        fn = getattr(module, name, None)
        if not callable(fn):
            return f"{name_of} has no method {name}()"
        kwargs = {"generator": None} if name == "sample" else {}
        try:
            signature = inspect.signature(fn)
            signature.bind(*range(n_args), **kwargs)
        except TypeError:
            shown = ", ".join([f"arg{i}" for i in range(n_args)] + [f"{k}=..." for k in kwargs])
            return f"{name_of}.{name}{signature} cannot be called as {name}({shown})"
        except ValueError:  # no signature (builtins): trust it
            continue
    return None


def model_input(module: Any, batch: dict[str, Any]) -> torch.Tensor:
    """What the model reconstructs ``batch["image"]`` from: for models that corrupt their input
    (denoising, masking, super-resolution) the corrupted images, each seeded by its dataset index as in
    the model's validation loss (``corrupt_seeded``); else the images themselves (the same object)."""
    x = batch["image"]
    if not getattr(module, "corrupts_input", False) or not callable(getattr(module, "corrupt_seeded", None)):
        return x
    index = batch.get("index")
    seeds = index.tolist() if isinstance(index, torch.Tensor) else list(range(x.shape[0]))
    return module.corrupt_seeded(x, seeds)


def takes_label(fn: Any) -> bool:
    """Whether ``fn`` accepts a ``label`` keyword (conditional models: ``encode(x, label)``, ...)."""
    try:
        parameters = inspect.signature(fn).parameters.values()
    except (TypeError, ValueError):
        return False
    return any(p.name == "label" or p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters)


def with_label(fn: Any, *args: Any, label: torch.Tensor | None = None) -> Any:
    """``fn(*args)``, with ``label=label`` added when there is a label and ``fn`` takes one, so that
    conditional models get the batch's class labels and unconditional ones are called as before."""
    if label is not None and takes_label(fn):
        return fn(*args, label=label)
    return fn(*args)


def dataset_label(class_name: str, root: str | Path | None = None, name: str | None = None) -> str:
    """A short dataset name for tables: ``name`` if the data module has one; for a generic folder
    module (``ImageFolderDataModule``) the folder's name (``img_align_celeba``); else the class name
    without ``DataModule``, lower case (``shapes``)."""
    if name:
        return str(name)
    if root and "Folder" in class_name:
        return Path(str(root)).expanduser().name or str(root)
    short = class_name.rsplit(".", 1)[-1].removesuffix("DataModule")
    return (short or class_name).lower()


def datamodule_label(datamodule: Any) -> str:
    """``dataset_label`` of a data module instance (``None`` gives ``"unknown"``)."""
    if datamodule is None:
        return "unknown"
    return dataset_label(
        type(datamodule).__name__, getattr(datamodule, "root", None), getattr(datamodule, "name", None)
    )

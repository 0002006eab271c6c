"""How callbacks and commands call a model: without side effects, checked, with labels and corrupted inputs.

Everything that scores or draws a model from outside its training loop (the callbacks, ``evaluate``,
``traverse``, the disentanglement metrics) goes through these, so a conditional model gets its labels, a
denoiser its corrupted input (seeded per image as in validation), and no call changes the model's mode or
the training run's random stream.
"""

from __future__ import annotations

import contextlib
import inspect
from collections.abc import Iterator
from typing import Any

import torch

from betavae.image_seeds import image_seeds


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
    return module.corrupt_seeded(x, image_seeds(batch))


def takes_label(fn: Any) -> bool:
    """Whether ``fn`` accepts a ``label`` keyword (conditional models: ``encode(x, label)``, ...)."""
    try:
        parameters = inspect.signature(fn).parameters.values()
    except (TypeError, ValueError):
        return False
    return any(p.name == "label" or p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters)


def needs_label(module: Any) -> bool:
    """Whether ``module`` is conditional: it encodes and decodes with a class label (``num_classes`` among its
    hyperparameters, like ``ConditionalVAE``), so images without labels cannot be encoded by it."""
    hparams = getattr(module, "hparams", None) or {}
    return bool(hparams.get("num_classes"))


def with_label(fn: Any, *args: Any, label: torch.Tensor | None = None) -> Any:
    """``fn(*args)``, with ``label=label`` added when there is a label and ``fn`` takes one, so that
    conditional models get the batch's class labels and unconditional ones are called as before."""
    if label is not None and takes_label(fn):
        return fn(*args, label=label)
    return fn(*args)

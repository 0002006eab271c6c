"""A checkpoint checked and read once, then handed downhill: CLI → trainer → ``evaluate`` / ``traverse``.

Before, ``evaluate`` checked the file three times and read it twice (the CLI's early check, its fit check,
then ``load_weights``). Now the CLI reads it once into a ``LoadedCheckpoint``, checks that it fits the
model, and the command loads the weights from it. (LightningCLI itself also reads the file's
hyperparameters once, through its own ``torch.load``, before the model is built.)
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from betavae.checkpoints import load_checkpoint
from betavae.errors import CheckpointError


@dataclass(frozen=True)
class LoadedCheckpoint:
    """A checkpoint file, checked (``check_checkpoint``) and read (``load_checkpoint``) once.

    Attributes:
        path: The file, resolved.
        contents: What ``torch.load`` gave (``state_dict``, ``hyper_parameters``, ``epoch``, ...); ``None``
            when loading with ``weights_only`` refused objects beyond tensors: whoever needs the weights then
            loads the file as the user asked (``--weights_only false``, trusted files only).
    """

    path: Path
    contents: dict[str, Any] | None = field(default=None, repr=False)

    def is_for(self, path: str | Path) -> bool:
        """Whether this is the file at ``path``."""
        return Path(path).expanduser().resolve() == self.path

    @property
    def info(self) -> dict[str, Any]:
        """Its ``epoch`` and ``global_step`` (``None`` where it has none)."""
        contents = self.contents or {}
        return {"epoch": contents.get("epoch"), "global_step": contents.get("global_step")}


def read_checkpoint(path: str | Path) -> LoadedCheckpoint:
    """Check and read ``path`` with ``weights_only`` (tensors and plain values only).

    Raises:
        MissingFileError: nothing is there.
        CheckpointError: not a readable Lightning checkpoint (the message says why); a file that holds other
            objects is no error here (``contents`` is ``None``).
    """
    try:
        contents = load_checkpoint(path, weights_only=True)
    except CheckpointError as err:
        if "weights_only" not in str(err):
            raise
        contents = None  # objects beyond tensors: loaded later as the user asks (weights_only)
    return LoadedCheckpoint(Path(path).expanduser().resolve(), contents)

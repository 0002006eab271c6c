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


@dataclass(frozen=True)
class LoadedCheckpoint:
    """A checkpoint file, checked (``check_checkpoint``) and read (``load_checkpoint``) once.

    Attributes:
        path: The file, resolved.
        contents: What ``torch.load`` gave (``state_dict``, ``hyper_parameters``, ``epoch``, ...), weights-only
            unless the user said ``--weights_only false`` (trusted files only).
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


def read_checkpoint(path: str | Path, weights_only: bool = True) -> LoadedCheckpoint:
    """Check and read ``path``, with ``weights_only`` (tensors and plain values only) unless the caller passes
    ``weights_only=False`` for a file the user trusts and said so.

    Raises:
        MissingFileError: nothing is there.
        CheckpointError: not a readable Lightning checkpoint, or a pickle of other objects (never unpickled);
            one message saying why.
    """
    return LoadedCheckpoint(Path(path).expanduser().resolve(), load_checkpoint(path, weights_only=weights_only))

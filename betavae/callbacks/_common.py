"""When the evaluation callbacks are due."""

from __future__ import annotations

import lightning as L


def due(trainer: L.Trainer, every_n_epochs: int) -> bool:
    """Whether a callback run every ``every_n_epochs`` validation epochs runs now.

    Due on its period, on the last epoch, in a ``fast_dev_run``, and on every ``validate`` / ``test``
    call outside ``fit``.
    """
    if trainer.state.fn != "fit":
        return True
    last = trainer.max_epochs is not None and trainer.current_epoch + 1 >= trainer.max_epochs
    return (trainer.current_epoch + 1) % every_n_epochs == 0 or last or bool(trainer.fast_dev_run)

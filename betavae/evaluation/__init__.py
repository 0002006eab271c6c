"""The ``evaluate``, ``traverse`` and ``report`` commands: checkpoints and runs scored through ``betavae.scoring``."""

from betavae.evaluation.disentanglement import score_disentanglement
from betavae.evaluation.evaluate import (
    evaluate_checkpoint,
    load_weights,
    run_dir_of,
    score_reconstructions,
    score_samples,
)
from betavae.evaluation.report import collect, report, write_report
from betavae.evaluation.tables import markdown, markdown_table
from betavae.evaluation.traverse import parse_dims, traverse_checkpoint

__all__ = [
    "collect",
    "evaluate_checkpoint",
    "load_weights",
    "markdown",
    "markdown_table",
    "parse_dims",
    "report",
    "run_dir_of",
    "score_disentanglement",
    "score_reconstructions",
    "score_samples",
    "traverse_checkpoint",
    "write_report",
]

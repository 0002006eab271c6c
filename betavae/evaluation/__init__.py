"""What the ``evaluate``, ``traverse`` and ``report`` commands compute (the callbacks' scores, offline)."""

from betavae.evaluation.evaluate import (
    evaluate_checkpoint,
    load_weights,
    markdown_table,
    run_dir_of,
    score_reconstructions,
    score_samples,
)
from betavae.evaluation.report import collect, report, write_report
from betavae.evaluation.traverse import parse_dims, traverse_checkpoint

__all__ = [
    "collect",
    "evaluate_checkpoint",
    "load_weights",
    "markdown_table",
    "parse_dims",
    "report",
    "run_dir_of",
    "score_reconstructions",
    "score_samples",
    "traverse_checkpoint",
    "write_report",
]

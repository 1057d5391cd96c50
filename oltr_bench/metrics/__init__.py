"""The one definition of every number oltr-bench reports (SPEC.md §3).

Plain functions over arrays; the CLI, the engine, the reporter and users' notebooks all call
these. ``compute_metrics(labels, train_counts, logits=...)`` computes the whole set from arrays
shaped like a predictions file; ``evaluate(preds, split)`` validates predictions against a split
and returns the contents of ``results.json``; each metric is also a function of its own.
"""

from oltr_bench.metrics.calibration import ece, reliability
from oltr_bench.metrics.core import (
    closed_predictions,
    compute_metrics,
    group_accuracies,
    macro_f1,
    per_class_accuracy,
    score_predictions,
    top1,
)
from oltr_bench.metrics.evaluate import evaluate, evaluate_file, write_results
from oltr_bench.metrics.openset import (
    aupr_in,
    aupr_out,
    auroc,
    fpr_at_tpr,
    open_absorption,
    open_decision,
    open_f1_sweep,
    open_f_measure,
    oscr,
    oscr_points,
    roc_points,
)
from oltr_bench.metrics.predictions import Predictions, align, load_predictions, write_predictions
from oltr_bench.metrics.protocols import PROTOCOLS, Protocol, get_protocol

__all__ = [
    "PROTOCOLS",
    "Predictions",
    "Protocol",
    "align",
    "aupr_in",
    "aupr_out",
    "auroc",
    "closed_predictions",
    "compute_metrics",
    "ece",
    "evaluate",
    "evaluate_file",
    "fpr_at_tpr",
    "get_protocol",
    "group_accuracies",
    "load_predictions",
    "macro_f1",
    "open_absorption",
    "open_decision",
    "open_f1_sweep",
    "open_f_measure",
    "oscr",
    "oscr_points",
    "per_class_accuracy",
    "reliability",
    "roc_points",
    "score_predictions",
    "top1",
    "write_predictions",
    "write_results",
]

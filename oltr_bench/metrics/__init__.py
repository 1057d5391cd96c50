"""The one definition of every number oltr-bench reports (SPEC.md §3).

Plain functions over arrays; the CLI, the engine, the reporter and users' notebooks all call
these. ``compute_metrics(labels, train_counts, logits=...)`` computes the whole set from arrays
shaped like a predictions file; ``evaluate(preds, split)`` validates predictions against a split
and returns the contents of ``results.json``; each metric is also a function of its own.
"""

import importlib

# Names are imported on first use (PEP 562), so that importing one submodule (say the protocol
# definitions, for the CLI) does not pull in scikit-learn.
_SUBMODULES = {
    "PROTOCOLS": "oltr_bench.protocols",
    "Predictions": "oltr_bench.metrics.predictions",
    "Protocol": "oltr_bench.protocols",
    "align": "oltr_bench.metrics.predictions",
    "aupr_in": "oltr_bench.metrics.openset",
    "aupr_out": "oltr_bench.metrics.openset",
    "auroc": "oltr_bench.metrics.openset",
    "closed_predictions": "oltr_bench.metrics.core",
    "compute_metrics": "oltr_bench.metrics.core",
    "ece": "oltr_bench.metrics.calibration",
    "evaluate": "oltr_bench.metrics.evaluate",
    "evaluate_file": "oltr_bench.metrics.evaluate",
    "fpr_at_tpr": "oltr_bench.metrics.openset",
    "get_protocol": "oltr_bench.protocols",
    "group_accuracies": "oltr_bench.metrics.core",
    "load_predictions": "oltr_bench.metrics.predictions",
    "macro_f1": "oltr_bench.metrics.core",
    "open_absorption": "oltr_bench.metrics.openset",
    "open_decision": "oltr_bench.metrics.openset",
    "open_f1_sweep": "oltr_bench.metrics.openset",
    "open_f_measure": "oltr_bench.metrics.openset",
    "oscr": "oltr_bench.metrics.openset",
    "oscr_points": "oltr_bench.metrics.openset",
    "per_class_accuracy": "oltr_bench.metrics.core",
    "reliability": "oltr_bench.metrics.calibration",
    "roc_points": "oltr_bench.metrics.openset",
    "score_predictions": "oltr_bench.metrics.core",
    "top1": "oltr_bench.metrics.core",
    "write_predictions": "oltr_bench.metrics.predictions",
    "write_results": "oltr_bench.formats.results",
}


def __getattr__(name: str):
    if name in _SUBMODULES:
        return getattr(importlib.import_module(_SUBMODULES[name]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


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

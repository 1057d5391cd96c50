"""oltr-bench: benchmark splits, one training harness and exact metrics for Open Long-Tailed Recognition.

The package is laid out as the pipeline it implements:
``splits`` (list files and manifests) -> ``data`` (datasets, samplers, transforms) ->
``models`` (backbones) and ``oltr_bench.baselines`` (one module per method) ->
``engine`` (training and evaluation) -> ``metrics`` (one definition of every number) ->
``report`` (tables and the leaderboard site).

The Python API, in one call each:

- ``oltr_bench.evaluate_model(model, dataset="imagenet_lt")``: every metric of any
  ``torch.nn.Module`` on a split (:mod:`oltr_bench.api`);
- ``oltr_bench.load_results(paths)``: runs and leaderboard entries as a pandas DataFrame
  (:mod:`oltr_bench.report.frame`);
- ``oltr_bench.metrics``: the metrics as plain functions of arrays.

Importing ``oltr_bench`` loads none of torch, pandas or scikit-learn: names are imported on first use.
"""

import importlib

__version__ = "0.1.0"

_LAZY = {"evaluate_model": "oltr_bench.api", "load_results": "oltr_bench.report.frame"}


def __getattr__(name: str):
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = ["__version__", "evaluate_model", "load_results"]

"""oltr-bench: benchmark splits, one training harness and exact metrics for Open Long-Tailed Recognition.

The package is laid out as the pipeline it implements:
``splits`` (list files and manifests) -> ``data`` (datasets, samplers, transforms) ->
``models`` (backbones) and ``oltr_bench.baselines`` (one module per method) ->
``engine`` (training and evaluation) -> ``metrics`` (one definition of every number) ->
``report`` (tables and the leaderboard site).
"""

__version__ = "0.1.0"

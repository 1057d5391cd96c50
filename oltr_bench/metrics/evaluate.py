"""Score a predictions file against a split: the API behind ``oltr-bench evaluate``."""

from __future__ import annotations

import os
from typing import Any

from oltr_bench.errors import OltrError
from oltr_bench.metrics.core import compute_metrics
from oltr_bench.metrics.predictions import Predictions, align, load_predictions
from oltr_bench.metrics.protocols import get_protocol
from oltr_bench.splits.format import SplitDir
from oltr_bench.utils.io import atomic_write_json

RESULTS_FORMAT = "oltr-bench-results/1"
DEFAULT_THRESHOLD = 0.1


def evaluate(
    preds: Predictions,
    split: SplitDir,
    *,
    which: str = "test",
    protocol: str = "oltr",
    threshold: float = DEFAULT_THRESHOLD,
    method: str | None = None,
    provenance: dict[str, Any] | None = None,
    partial: bool = False,
) -> dict[str, Any]:
    """Validate ``preds`` against ``split`` and compute the results dict (SPEC.md §3 ``results.json``)."""
    if which not in ("val", "test"):
        raise OltrError(f"evaluation set {which!r} is not known; expected 'val' or 'test'")
    proto = get_protocol(protocol)
    aligned, labels = align(preds, split, which, partial=partial)
    scored = compute_metrics(
        aligned.probs(), labels, split.train_counts, proto, threshold, pred=aligned.pred, known_score=aligned.known_score
    )
    return {
        "format": RESULTS_FORMAT,
        "dataset": split.dataset,
        "method": method or aligned.meta.get("method"),
        "split_fingerprint": split.fingerprint,
        "evaluation_set": which,
        "protocol": proto.name,
        "open_threshold": threshold if aligned.pred is None else None,
        "metrics": scored["metrics"],
        "groups": scored["groups"],
        "per_class_acc": scored["per_class_acc"],
        "counts": {"known": int((labels >= 0).sum()), "open": int((labels < 0).sum())},
        "partial": partial,
        "provenance": {**aligned.meta, **(provenance or {})},
    }


def evaluate_file(path: str | os.PathLike, split: SplitDir, **kwargs: Any) -> dict[str, Any]:
    return evaluate(load_predictions(path), split, **kwargs)


def write_results(path: str | os.PathLike, results: dict[str, Any]) -> None:
    atomic_write_json(path, results)

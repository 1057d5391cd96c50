"""Score a predictions file against a split: the API behind ``oltr-bench evaluate``."""

from __future__ import annotations

import math
import os
from typing import Any

from oltr_bench import formats
from oltr_bench.errors import OltrError
from oltr_bench.metrics.core import closed_predictions, score_predictions
from oltr_bench.metrics.predictions import Predictions, align, load_predictions
from oltr_bench.protocols import DEFAULT_THRESHOLD, get_protocol
from oltr_bench.splits.format import SplitDir
from oltr_bench.formats.results import write_results  # noqa: F401 - part of the metrics API (oltr_bench.metrics.write_results)


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
    """Validate ``preds`` against ``split`` and compute the results dict (SPEC.md §3 ``results.json``).

    ``which`` is the evaluation set (``test`` = test + open lists, or ``val``); ``protocol`` and
    ``threshold`` (τ, ignored when the predictions carry their own ``pred``) define the metrics.
    """
    if which not in ("val", "test"):
        raise OltrError(f"evaluation set {which!r} is not known; expected 'val' or 'test'")
    proto = get_protocol(protocol)
    if not math.isfinite(float(threshold)):
        raise OltrError(f"--threshold: found {threshold!r}; expected a finite number (τ on the known score)")
    if preds.known_score is None and preds.pred is None and not 0.0 <= float(threshold) <= 1.0:
        raise OltrError(f"--threshold: found {threshold!r}; the known score of this file is the max softmax probability, "
                        "in [0, 1], so every sample would be accepted or rejected; expected 0 <= τ <= 1")
    rows, labels = align(preds, split, which, partial=partial)
    # Per-row reductions run in file order (no copy of the [N, C] scores); the vectors are then
    # put in the split's order, so the results do not depend on the order of the file's rows.
    closed, confidence = closed_predictions(preds.scores, are_probs=preds.scores_are_probs)
    scored = score_predictions(
        labels,
        split.train_counts,
        closed[rows],
        confidence[rows],
        pred=None if preds.pred is None else preds.pred[rows],
        known_score=None if preds.known_score is None else preds.known_score[rows],
        protocol=proto,
        threshold=threshold,
    )
    return {
        "format": formats.RESULTS,
        "dataset": split.dataset,
        "method": method or preds.meta.get("method"),
        "split_fingerprint": split.fingerprint,
        "evaluation_set": which,
        "protocol": proto.name,
        "open_threshold": float(threshold) if preds.pred is None else None,
        "metrics": scored["metrics"],
        "groups": scored["groups"],
        "per_class_acc": scored["per_class_acc"],
        "train_counts": scored["train_counts"],
        "counts": {"known": int((labels >= 0).sum()), "open": int((labels < 0).sum())},
        "partial": partial,
        "provenance": {**preds.meta, **(provenance or {})},
        "curves": scored["curves"],
    }


def evaluate_file(path: str | os.PathLike, split: SplitDir, **kwargs: Any) -> dict[str, Any]:
    """:func:`evaluate` of the predictions file at ``path`` (its headers checked against the split before loading)."""
    preds = load_predictions(path, split, which=kwargs.get("which", "test"), partial=kwargs.get("partial", False))
    return evaluate(preds, split, **kwargs)

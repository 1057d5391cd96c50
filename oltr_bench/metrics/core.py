"""Closed-set and shot-group metrics, and :func:`compute_metrics`, which computes every metric.

Definitions: SPEC.md §3; each docstring restates its own. Notation: ``labels`` has y >= 0 for
known (test) samples and -1 for open samples; ``closed`` = ŷ = argmax p; ``confidence`` = max p;
``decision`` = ŷ', the open-set decision (-1 = rejected). Fractions are in [0, 1]; a metric that
is undefined for the input (no known samples, an empty shot group, ...) is ``None``.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from sklearn.metrics import f1_score

from oltr_bench.metrics.calibration import ece, reliability
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
from oltr_bench.protocols import GROUP_NAMES, Protocol, get_protocol

BLOCK_ROWS = 1024  # rows per float64 softmax block: 1024 x 1000 classes = 8 MB


def closed_predictions(scores: np.ndarray, are_probs: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """ŷ = argmax_c p_c and the confidence max_c p_c of every row, p = softmax(scores) (or scores if probs).

    For logits, max p = 1 / Σ_c exp(z_c − max z), summed in float64 a block of rows at a time, so
    the [N, C] probability matrix is never held in memory (ImageNet-LT's 68,000 x 1000 would take
    544 MB in float64). ŷ is the argmax of the scores themselves: softmax is strictly increasing,
    so this is the same class without the rounding of exp (the first class on exact ties).
    """
    scores = np.asarray(scores)
    if are_probs:
        return scores.argmax(axis=1), scores.max(axis=1).astype(np.float64)
    closed = np.empty(len(scores), dtype=np.int64)
    confidence = np.empty(len(scores), dtype=np.float64)
    buffer = np.empty((min(BLOCK_ROWS, len(scores)), scores.shape[1]), dtype=np.float64)
    # One pass per block while it is in cache: argmax and max on the scores as stored, then the
    # float64 sum of exp(z − max z) in a reused buffer.
    for start in range(0, len(scores), BLOCK_ROWS):
        block = scores[start : start + BLOCK_ROWS]
        z = buffer[: len(block)]
        closed[start : start + len(block)] = block.argmax(axis=1)
        np.subtract(block, block.max(axis=1, keepdims=True), out=z, dtype=np.float64)
        np.exp(z, out=z)
        confidence[start : start + len(block)] = 1.0 / z.sum(axis=1)
    return closed, confidence


def per_class_accuracy(decision: np.ndarray, labels: np.ndarray, num_classes: int) -> np.ndarray:
    """acc_c = #{known samples of class c with ŷ = y} / #{known samples of class c} (NaN for a class with none)."""
    known = labels >= 0
    y, d = labels[known], decision[known]
    total = np.bincount(y, minlength=num_classes).astype(np.float64)
    correct = np.bincount(y[d == y], minlength=num_classes).astype(np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(total > 0, correct / np.maximum(total, 1), np.nan)


def group_accuracies(class_acc: np.ndarray, groups: np.ndarray) -> dict[str, float | None]:
    """Mean per-class accuracy over each shot group's classes (classes without test samples skipped; None if none remain)."""
    out: dict[str, float | None] = {}
    for g, name in enumerate(GROUP_NAMES):
        values = class_acc[(groups == g) & ~np.isnan(class_acc)]
        out[name] = float(values.mean()) if values.size else None
    return out


def top1(decision: np.ndarray, labels: np.ndarray) -> float | None:
    """Mean over known samples of [ŷ = y] (None without known samples)."""
    known = labels >= 0
    return float(np.mean(decision[known] == labels[known])) if known.any() else None


def macro_f1(closed: np.ndarray, labels: np.ndarray) -> float | None:
    """Macro F1 of ŷ vs y over known samples (scikit-learn ``f1_score(average="macro")``).

    The mean of the per-class F1 = 2·TP_c / (2·TP_c + FP_c + FN_c) over the classes that occur in
    y or ŷ (scikit-learn's default label set, as in the OLTR code); a class never predicted and
    never present is not counted, one with TP_c = 0 counts 0. None without known samples.
    """
    known = labels >= 0
    if not known.any():
        return None
    return float(f1_score(labels[known], closed[known], average="macro", zero_division=0))


def _float_list(values) -> list[float | None]:
    return [None if np.isnan(v) else float(v) for v in np.asarray(values, dtype=np.float64)]


def score_predictions(
    labels: np.ndarray,
    train_counts,
    closed: np.ndarray,
    confidence: np.ndarray,
    *,
    pred: np.ndarray | None = None,
    known_score: np.ndarray | None = None,
    protocol: str | Protocol = "oltr",
    threshold: float = 0.1,
) -> dict[str, Any]:
    """Every metric of SPEC.md §3 from per-sample predictions (see :func:`compute_metrics`).

    ``closed`` = ŷ and ``confidence`` = max p per sample, as returned by :func:`closed_predictions`.
    s = ``known_score`` if given, else ``confidence``; ŷ' = ``pred`` if given, else -1 where
    s < ``threshold`` and ŷ elsewhere. ECE always uses ``confidence`` (it is about probabilities).
    """
    proto = protocol if isinstance(protocol, Protocol) else get_protocol(protocol)
    labels = np.asarray(labels, dtype=np.int64)
    closed = np.asarray(closed, dtype=np.int64)
    confidence = np.asarray(confidence, dtype=np.float64)
    train_counts = np.asarray(train_counts, dtype=np.int64)
    num_classes = len(train_counts)
    n = len(labels)
    for name, array in (("closed", closed), ("confidence", confidence), ("pred", pred), ("known_score", known_score)):
        if array is not None and np.shape(array) != (n,):
            raise ValueError(f"{name}: expected shape ({n},) like labels, found {np.shape(array)}")
    if n and (labels.min() < -1 or labels.max() >= num_classes):
        raise ValueError(f"labels: expected values in {{-1, 0..{num_classes - 1}}}, found {labels.min()}..{labels.max()}")
    if pred is not None and n and (np.min(pred) < -1 or np.max(pred) >= num_classes):
        raise ValueError(f"pred: expected values in {{-1, 0..{num_classes - 1}}}, found {np.min(pred)}..{np.max(pred)}")
    score = confidence if known_score is None else np.asarray(known_score, dtype=np.float64)
    decision = open_decision(closed, score, threshold, pred)
    groups = proto.groups(train_counts)
    known = labels >= 0
    correct = closed[known] == labels[known]

    class_acc = per_class_accuracy(closed, labels, num_classes)
    metrics: dict[str, Any] = {"top1": top1(closed, labels)}
    metrics.update(group_accuracies(class_acc, groups))
    metrics["open_top1"] = top1(decision, labels)
    open_groups = group_accuracies(per_class_accuracy(decision, labels, num_classes), groups)
    metrics.update({f"open_{name}": value for name, value in open_groups.items()})
    metrics["open_f1"] = open_f_measure(decision, labels, proto)
    metrics["auroc"] = auroc(score, labels)
    metrics["aupr_in"] = aupr_in(score, labels)
    metrics["aupr_out"] = aupr_out(score, labels)
    metrics["fpr95"] = fpr_at_tpr(score, labels, 0.95)
    metrics["oscr"] = oscr(closed, score, labels)
    metrics["ece"] = ece(confidence[known], correct)
    metrics["macro_f1"] = macro_f1(closed, labels)
    absorption = open_absorption(decision, labels, groups)
    metrics["open_accept_rate"] = absorption.pop("accept_rate")
    metrics.update({f"open_absorbed_{name}": value for name, value in absorption.items()})

    sweep = open_f1_sweep(closed, score, labels, proto)
    roc_xy = roc_points(score, labels)
    oscr_xy = oscr_points(closed, score, labels)
    curves = {
        "open_f1_sweep": None if sweep is None else {"threshold": sweep[0].tolist(), "open_f1": sweep[1].tolist()},
        "roc": None if roc_xy is None else {"fpr": roc_xy[0].tolist(), "tpr": roc_xy[1].tolist()},
        "oscr": None if oscr_xy is None else {"fpr": oscr_xy[0].tolist(), "ccr": oscr_xy[1].tolist()},
        "reliability": None,
    }
    if known.any():
        bins = reliability(confidence[known], correct)
        curves["reliability"] = {
            "bin_lower": bins["bin_lower"].tolist(),
            "bin_upper": bins["bin_upper"].tolist(),
            "confidence": _float_list(bins["confidence"]),
            "accuracy": _float_list(bins["accuracy"]),
            "count": bins["count"].tolist(),
        }
    return {
        "metrics": metrics,
        "groups": {name: int(np.sum(groups == g)) for g, name in enumerate(GROUP_NAMES)},
        "per_class_acc": _float_list(class_acc),
        "train_counts": train_counts.tolist(),
        "curves": curves,
    }


def compute_metrics(
    labels: np.ndarray,
    train_counts,
    *,
    logits: np.ndarray | None = None,
    probs: np.ndarray | None = None,
    pred: np.ndarray | None = None,
    known_score: np.ndarray | None = None,
    protocol: str | Protocol = "oltr",
    threshold: float = 0.1,
) -> dict[str, Any]:
    """Every metric of SPEC.md §3 for one evaluation set, from arrays shaped like a predictions file.

    ``labels`` [N] (class index, -1 = open sample), ``train_counts`` [C] (training images per
    class, which set the shot groups under ``protocol``), exactly one of ``logits`` or ``probs``
    [N, C], and optionally the method's own decision ``pred`` [N] (-1 = rejected; replaces the
    threshold rule) and its own ``known_score`` [N] (replaces max p as s). Returns ``metrics``
    (the keys of SPEC.md §3), ``groups`` (classes per shot group), ``per_class_acc`` (closed-set,
    None for a class without test samples), ``train_counts`` and ``curves`` (plot data, SPEC.md §3).

    >>> r = compute_metrics([0, 1, -1], [200, 50], logits=[[3.0, 0.0], [0.0, 3.0], [0.0, 0.0]])
    >>> r["metrics"]["top1"], r["metrics"]["many"], r["metrics"]["medium"], r["metrics"]["few"]
    (1.0, 1.0, 1.0, None)
    """
    if (logits is None) == (probs is None):
        raise ValueError("give exactly one of logits or probs")
    scores = np.asarray(logits if logits is not None else probs)
    labels = np.asarray(labels)
    if scores.ndim != 2 or scores.shape != (len(labels), len(train_counts)):
        raise ValueError(
            f"{'logits' if logits is not None else 'probs'}: expected shape ({len(labels)}, {len(train_counts)}) "
            f"= (len(labels), len(train_counts)), found {scores.shape}"
        )
    closed, confidence = closed_predictions(scores, are_probs=probs is not None)
    return score_predictions(
        labels, train_counts, closed, confidence, pred=pred, known_score=known_score, protocol=protocol, threshold=threshold
    )

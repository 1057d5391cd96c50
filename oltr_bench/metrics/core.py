"""Metric functions over arrays (definitions: SPEC.md §3; each docstring restates its own).

Notation: ``labels`` has y >= 0 for known (test) samples and -1 for open samples; ``probs`` are
class probabilities [N, C]; ``closed`` = argmax probs; ``decision`` = the open-set decision
(-1 = rejected). Fractions are in [0, 1].
"""

from __future__ import annotations

from typing import Any

import numpy as np

from oltr_bench.metrics.protocols import GROUP_NAMES, Protocol


def softmax(logits: np.ndarray) -> np.ndarray:
    """Row-wise softmax in float64 (max-subtracted for stability)."""
    z = np.asarray(logits, dtype=np.float64)
    z = z - z.max(axis=1, keepdims=True)
    np.exp(z, out=z)
    z /= z.sum(axis=1, keepdims=True)
    return z


def open_decision(closed: np.ndarray, known_score: np.ndarray, threshold: float, pred: np.ndarray | None = None) -> np.ndarray:
    """ŷ' = ``pred`` if the method gives its own decision, else -1 where s < τ and ŷ elsewhere."""
    if pred is not None:
        return np.asarray(pred, dtype=np.int64)
    return np.where(np.asarray(known_score) < threshold, -1, closed)


def per_class_accuracy(decision: np.ndarray, labels: np.ndarray, num_classes: int) -> np.ndarray:
    """Accuracy [ŷ = y] of each known class over its test samples (NaN for a class with none)."""
    known = labels >= 0
    y, d = labels[known], decision[known]
    total = np.bincount(y, minlength=num_classes).astype(np.float64)
    correct = np.bincount(y[d == y], minlength=num_classes).astype(np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(total > 0, correct / np.maximum(total, 1), np.nan)


def group_accuracies(class_acc: np.ndarray, groups: np.ndarray) -> dict[str, float | None]:
    """Mean of per-class accuracy over each shot group's classes (classes without test samples skipped; None if empty)."""
    out: dict[str, float | None] = {}
    for g, name in enumerate(GROUP_NAMES):
        values = class_acc[(groups == g) & ~np.isnan(class_acc)]
        out[name] = float(values.mean()) if values.size else None
    return out


def top1(decision: np.ndarray, labels: np.ndarray) -> float | None:
    """Mean over known samples of [ŷ = y] (None without known samples)."""
    known = labels >= 0
    return float(np.mean(decision[known] == labels[known])) if known.any() else None


def open_f_measure(decision: np.ndarray, labels: np.ndarray, protocol: Protocol) -> float:
    """OLTR's open-set F-measure.

    TP = #known with ŷ' = y; FP = #known with ŷ' ≠ y (``oltr-2019``: and ŷ' ≠ -1);
    FN = #open with ŷ' ≠ -1; P = TP/(TP+FP), R = TP/(TP+FN), F = 2PR/(P+R) (0 when P+R = 0).
    """
    known = labels >= 0
    tp = int(np.sum(known & (decision == labels)))
    wrong = known & (decision != labels)
    if not protocol.rejections_are_fp:
        wrong &= decision != -1
    fp = int(np.sum(wrong))
    fn = int(np.sum(~known & (decision != -1)))
    p = tp / (tp + fp) if tp + fp else 0.0
    r = tp / (tp + fn) if tp + fn else 0.0
    return 2 * p * r / (p + r) if p + r else 0.0


def compute_metrics(
    probs: np.ndarray,
    labels: np.ndarray,
    train_counts,
    protocol: Protocol,
    threshold: float = 0.1,
    pred: np.ndarray | None = None,
    known_score: np.ndarray | None = None,
) -> dict[str, Any]:
    """All metrics of SPEC.md §3 for one evaluation set; returns ``metrics``, ``groups``, ``per_class_acc``."""
    labels = np.asarray(labels, dtype=np.int64)
    num_classes = probs.shape[1]
    closed = probs.argmax(axis=1)
    score = probs.max(axis=1) if known_score is None else np.asarray(known_score, dtype=np.float64)
    decision = open_decision(closed, score, threshold, pred)
    groups = protocol.groups(train_counts)
    class_acc = per_class_accuracy(closed, labels, num_classes)
    open_class_acc = per_class_accuracy(decision, labels, num_classes)
    metrics: dict[str, Any] = {"top1": top1(closed, labels)}
    metrics.update(group_accuracies(class_acc, groups))
    metrics["open_top1"] = top1(decision, labels)
    metrics.update({f"open_{k}": v for k, v in group_accuracies(open_class_acc, groups).items()})
    is_open = labels < 0
    metrics["open_f1"] = open_f_measure(decision, labels, protocol)
    metrics["open_accept_rate"] = float(np.mean(decision[is_open] != -1)) if is_open.any() else None
    return {
        "metrics": metrics,
        "groups": {name: int(np.sum(groups == g)) for g, name in enumerate(GROUP_NAMES)},
        "per_class_acc": [None if np.isnan(a) else float(a) for a in class_acc],
    }

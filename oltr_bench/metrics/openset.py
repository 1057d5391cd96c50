"""Open-set metrics: the open decision, OLTR's F-measure, detection (AUROC, AUPR, FPR@95), OSCR, absorption.

Definitions: SPEC.md §3; each docstring restates its own. Known samples (y >= 0) are the
positives of detection, open samples (y = -1) the negatives; s is the known score (higher = more
likely known) and a sample is accepted at threshold t when s >= t. Functions return None where
the metric is undefined (no known or no open samples).
"""

from __future__ import annotations

import numpy as np
from sklearn.metrics import auc, average_precision_score, roc_auc_score, roc_curve

from oltr_bench.protocols import GROUP_NAMES, Protocol, get_protocol

CURVE_POINTS = 201  # most points kept per plotted curve (results files stay small)


def open_decision(closed: np.ndarray, known_score: np.ndarray, threshold: float, pred: np.ndarray | None = None) -> np.ndarray:
    """ŷ' = ``pred`` if the method gives its own decision, else -1 where s < τ and ŷ elsewhere."""
    if pred is not None:
        return np.asarray(pred, dtype=np.int64)
    return np.where(np.asarray(known_score) < threshold, -1, closed)


def _f_measure(tp, fp, fn):
    """F = 2PR/(P+R) with P = TP/(TP+FP), R = TP/(TP+FN); 0/0 ratios and F with P+R = 0 are 0. Works elementwise."""
    tp, fp, fn = (np.asarray(v, dtype=np.float64) for v in (tp, fp, fn))
    with np.errstate(invalid="ignore", divide="ignore"):
        p = np.where(tp + fp > 0, tp / (tp + fp), 0.0)
        r = np.where(tp + fn > 0, tp / (tp + fn), 0.0)
        return np.where(p + r > 0, 2 * p * r / (p + r), 0.0)


def open_f_measure(decision: np.ndarray, labels: np.ndarray, protocol: str | Protocol = "oltr") -> float | None:
    """OLTR's open-set F-measure (Liu et al. 2019, after Bendale & Boult 2016).

    TP = #known with ŷ' = y; FP = #known with ŷ' ≠ y (``oltr-2019``: and ŷ' ≠ -1, so rejected
    known samples are not counted); FN = #open with ŷ' ≠ -1; P = TP/(TP+FP), R = TP/(TP+FN),
    F = 2PR/(P+R), 0 when P+R = 0. Correctly rejected open samples do not enter. Unlike the OLTR
    code there is no +1e-12 in the denominator. None without known samples.
    """
    proto = protocol if isinstance(protocol, Protocol) else get_protocol(protocol)
    decision, labels = np.asarray(decision), np.asarray(labels)
    known = labels >= 0
    if not known.any():
        return None
    tp = np.sum(known & (decision == labels))
    wrong = known & (decision != labels)
    if not proto.rejections_are_fp:
        wrong &= decision != -1
    fn = np.sum(~known & (decision != -1))
    return float(_f_measure(tp, np.sum(wrong), fn))


def _count_at_least(values: np.ndarray, thresholds: np.ndarray) -> np.ndarray:
    """#{v in values : v >= t} for each t."""
    values = np.sort(values)
    return len(values) - np.searchsorted(values, thresholds, side="left")


def sweep_thresholds(score: np.ndarray, points: int = CURVE_POINTS) -> np.ndarray:
    """The sweep grid: ``points`` evenly spaced thresholds from min(0, min s) to max(1, max s).

    For probabilities this is 0, 0.005, ..., 1 (0.1 is on the grid); other scores get their range.
    """
    score = np.asarray(score, dtype=np.float64)
    lo, hi = min(0.0, score.min()), max(1.0, score.max())
    return lo + (hi - lo) * np.arange(points) / (points - 1)  # k/200 exactly rounded on [0, 1]


def open_f1_sweep(
    closed: np.ndarray, score: np.ndarray, labels: np.ndarray, protocol: str | Protocol = "oltr", thresholds=None
) -> tuple[np.ndarray, np.ndarray] | None:
    """The open F-measure of the threshold rule (ŷ' = -1 where s < t, else ŷ) at each threshold t.

    Exact at every t (cumulative counts, not interpolation); ``thresholds`` defaults to
    :func:`sweep_thresholds`. A method's own ``pred`` is not used: this is the curve of s.
    Returns (thresholds, F), or None without known samples.
    """
    proto = protocol if isinstance(protocol, Protocol) else get_protocol(protocol)
    closed, score, labels = np.asarray(closed), np.asarray(score, dtype=np.float64), np.asarray(labels)
    known = labels >= 0
    if not known.any():
        return None
    t = sweep_thresholds(score) if thresholds is None else np.asarray(thresholds, dtype=np.float64)
    correct = known & (closed == labels)
    tp = _count_at_least(score[correct], t)
    if proto.rejections_are_fp:
        fp = int(known.sum()) - tp  # every known sample not accepted-and-right
    else:
        fp = _count_at_least(score[known & ~correct], t)
    fn = _count_at_least(score[~known], t)
    return t, _f_measure(tp, fp, fn)


def _both(labels: np.ndarray) -> tuple[np.ndarray, bool]:
    known = np.asarray(labels) >= 0
    return known, bool(known.any() and (~known).any())


def auroc(score: np.ndarray, labels: np.ndarray) -> float | None:
    """Area under the ROC curve of s with known samples positive (scikit-learn ``roc_auc_score``).

    Equals P(s_known > s_open) + ½·P(s_known = s_open) over known/open pairs.
    """
    known, ok = _both(labels)
    return float(roc_auc_score(known, score)) if ok else None


def aupr_in(score: np.ndarray, labels: np.ndarray) -> float | None:
    """Average precision of s with known samples positive (scikit-learn ``average_precision_score``).

    AP = Σ_n (R_n − R_{n−1})·P_n over the distinct thresholds, highest first (no interpolation).
    """
    known, ok = _both(labels)
    return float(average_precision_score(known, score)) if ok else None


def aupr_out(score: np.ndarray, labels: np.ndarray) -> float | None:
    """Average precision of −s with open samples positive (as :func:`aupr_in`)."""
    known, ok = _both(labels)
    return float(average_precision_score(~known, -np.asarray(score, dtype=np.float64))) if ok else None


def fpr_at_tpr(score: np.ndarray, labels: np.ndarray, level: float = 0.95) -> float | None:
    """Smallest FPR among thresholds whose TPR >= ``level`` (FPR@95 for 0.95), no interpolation.

    TPR(t) = #known with s >= t / #known, FPR(t) = #open with s >= t / #open, t over the scores.
    Every threshold is kept (``drop_intermediate=False``): dropping collinear ROC points can
    remove the first one that reaches the level and overstate the FPR.
    """
    known, ok = _both(labels)
    if not ok:
        return None
    fpr, tpr, _ = roc_curve(known, score, drop_intermediate=False)
    return float(fpr[tpr >= level].min())


def _oscr_points(closed: np.ndarray, score: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    known = np.asarray(labels) >= 0
    correct_scores = score[known][np.asarray(closed)[known] == np.asarray(labels)[known]]
    open_scores = score[~known]
    t = np.unique(np.concatenate([correct_scores, open_scores]))[::-1]
    ccr = _count_at_least(correct_scores, t) / known.sum()
    fpr = _count_at_least(open_scores, t) / (~known).sum()
    return np.r_[0.0, fpr], np.r_[0.0, ccr]


def oscr(closed: np.ndarray, score: np.ndarray, labels: np.ndarray) -> float | None:
    """Open-set classification rate: area under (FPR(t), CCR(t)) (Dhamija et al., NeurIPS 2018).

    CCR(t) = #known with ŷ = y and s >= t / #known, FPR(t) = #open with s >= t / #open, t over the
    distinct scores from high to low, starting at (0, 0) and ending at (1, closed-set accuracy);
    trapezoidal area. Tied scores form one threshold, so a correct known sample and an open
    sample with equal s count ½ — the same convention as AUROC; OSCR = accuracy x AUROC of the
    correctly classified known samples against the open ones. Misclassified known samples only
    lower the CCR (the mistake of implementations that ignore correctness).
    """
    _, ok = _both(labels)
    if not ok:
        return None
    fpr, ccr = _oscr_points(closed, np.asarray(score, dtype=np.float64), labels)
    return float(auc(fpr, ccr))


def downsample(x: np.ndarray, y: np.ndarray, max_points: int = CURVE_POINTS) -> tuple[np.ndarray, np.ndarray]:
    """At most ``max_points`` of a curve's points, evenly spaced along its length (|dx| + |dy|), ends kept.

    The kept points are points of the curve, not interpolations, so steps stay steps.
    """
    x, y = np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)
    if len(x) <= max_points:
        return x, y
    length = np.r_[0.0, np.cumsum(np.abs(np.diff(x)) + np.abs(np.diff(y)))]
    idx = np.searchsorted(length, np.linspace(0.0, length[-1], max_points), side="left")
    idx[-1] = len(x) - 1
    idx = np.unique(idx)
    return x[idx], y[idx]


def roc_points(score: np.ndarray, labels: np.ndarray, max_points: int = CURVE_POINTS) -> tuple[np.ndarray, np.ndarray] | None:
    """The ROC curve (FPR, TPR) of s, known positive, downsampled for plotting; None without both kinds."""
    known, ok = _both(labels)
    if not ok:
        return None
    fpr, tpr, _ = roc_curve(known, score)
    return downsample(fpr, tpr, max_points)


def oscr_points(closed: np.ndarray, score: np.ndarray, labels: np.ndarray, max_points: int = CURVE_POINTS) -> tuple[np.ndarray, np.ndarray] | None:
    """The OSCR curve (FPR, CCR) of :func:`oscr`, downsampled for plotting; None without both kinds."""
    _, ok = _both(labels)
    if not ok:
        return None
    return downsample(*_oscr_points(closed, np.asarray(score, dtype=np.float64), labels), max_points)


def open_absorption(decision: np.ndarray, labels: np.ndarray, groups: np.ndarray) -> dict[str, float | None]:
    """Where open samples go: ``accept_rate`` = #open with ŷ' ≠ -1 / #open, and for each shot group
    the share of accepted open samples whose ŷ' is a class of that group (the three shares sum
    to 1). This measures OLTR's claim that open samples are absorbed by the head classes.
    ``accept_rate`` is None without open samples; the shares are None when none is accepted.
    """
    decision, labels = np.asarray(decision), np.asarray(labels)
    out: dict[str, float | None] = {"accept_rate": None, **{name: None for name in GROUP_NAMES}}
    is_open = labels < 0
    if not is_open.any():
        return out
    accepted = decision[is_open]
    accepted = accepted[accepted != -1]
    out["accept_rate"] = len(accepted) / int(is_open.sum())
    if len(accepted):
        accepted_groups = np.asarray(groups)[accepted]
        for g, name in enumerate(GROUP_NAMES):
            out[name] = float(np.mean(accepted_groups == g))
    return out

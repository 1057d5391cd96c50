"""Calibration of the closed-set confidence: expected calibration error and its reliability bins.

Definitions: SPEC.md §3 (Guo et al., "On Calibration of Modern Neural Networks", ICML 2017).
"""

from __future__ import annotations

import numpy as np

ECE_BINS = 15


def _binned(confidence, correct, bins: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Bin edges, and per bin: count, sum of confidence, number correct.

    Bin b holds b/B < confidence <= (b+1)/B; a confidence <= 0 falls in the first bin, one > 1
    (probabilities that sum to 1 within tolerance) in the last. Sums run over the samples sorted
    by confidence, so they do not depend on row order.
    """
    confidence = np.asarray(confidence, dtype=np.float64)
    order = np.argsort(confidence, kind="stable")
    confidence, correct = confidence[order], np.asarray(correct, dtype=bool)[order]
    edges = np.arange(bins + 1) / bins  # b/B, exactly rounded
    bounds = np.r_[0, np.searchsorted(confidence, edges[1:-1], side="right"), len(confidence)]
    spans = list(zip(bounds[:-1], bounds[1:]))
    conf_sum = np.array([confidence[a:b].sum() for a, b in spans])
    correct_sum = np.array([np.count_nonzero(correct[a:b]) for a, b in spans])
    return edges, np.diff(bounds), conf_sum, correct_sum


def reliability(confidence: np.ndarray, correct: np.ndarray, bins: int = ECE_BINS) -> dict[str, np.ndarray]:
    """Reliability diagram over equal-width bins b/B < confidence <= (b+1)/B.

    Returns arrays over the bins: ``bin_lower``, ``bin_upper``, ``count``, ``confidence`` (mean
    confidence in the bin) and ``accuracy`` (mean of ``correct``); NaN for an empty bin.
    """
    edges, count, conf_sum, correct_sum = _binned(confidence, correct, bins)
    with np.errstate(invalid="ignore", divide="ignore"):
        return {
            "bin_lower": edges[:-1],
            "bin_upper": edges[1:],
            "count": count,
            "confidence": np.where(count > 0, conf_sum / count, np.nan),
            "accuracy": np.where(count > 0, correct_sum / count, np.nan),
        }


def ece(confidence: np.ndarray, correct: np.ndarray, bins: int = ECE_BINS) -> float | None:
    """Expected calibration error: Σ_b (n_b/N)·|acc_b − conf_b| over the bins of :func:`reliability`.

    ``confidence`` = max p and ``correct`` = [ŷ = y] of the known samples; computed as
    Σ_b |#correct_b − Σ conf_b| / N (the same sum, without rounding the bin means). None without samples.
    """
    if len(confidence) == 0:
        return None
    _, _, conf_sum, correct_sum = _binned(confidence, correct, bins)
    return float(np.sum(np.abs(correct_sum - conf_sum)) / len(confidence))

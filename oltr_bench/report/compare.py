"""Reported vs reproduced: a published number next to ours, measured the same way where possible.

A reported row pairs with each of our rows (runs and reproduced entries, never ``--quick`` runs)
of the same dataset and method. When the two were computed under different protocols or
thresholds, our numbers are re-scored: if every run of our row still has its
``predictions/test.npz`` and the split its manifest records (with the fingerprint it was scored
on), :func:`oltr_bench.metrics.evaluate.evaluate` recomputes them under the reported row's
protocol and threshold, so the gap compares like with like. Otherwise our numbers stay as run and
the pair says why they were not re-scored. A reported threshold that is unknown, or the
reported method's own rejection, cannot be applied to our predictions: our threshold is kept.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Sequence

from oltr_bench.errors import OltrError
from oltr_bench.metrics.keys import PAPER_KEYS
from oltr_bench.protocols import DEFAULT_THRESHOLD
from oltr_bench.report.collect import predictions_file, recorded_split_dir
from oltr_bench.report.rows import UNKNOWN, Row, aggregate
from oltr_bench.splits.format import SplitDir



@dataclass
class Comparison:
    """A reported row next to one of ours for the same dataset and method."""

    reported: Row
    ours: Row
    gaps: list[tuple[str, float, float, float]]  # (metric, reported, ours, ours - reported)
    protocol: str  # the protocol of our numbers in ``gaps``
    threshold: float | str | None  # and their open threshold (None: the method's own rejection)
    rescored: bool = False  # our numbers were recomputed from predictions for this comparison
    mismatch: str = ""  # why our numbers are still measured differently from the reported ones

    @property
    def same_protocol(self) -> bool:
        return self.reported.protocol == self.protocol

    @property
    def same_threshold(self) -> bool:
        return self.reported.open_threshold == self.threshold


def reported_vs_reproduced(rows: Sequence[Row]) -> list[Comparison]:
    """For each dataset and method: every reported row paired with each of our rows that shares
    at least one metric with it, ours re-scored under the reported protocol and threshold where
    the predictions allow."""
    reported = [r for r in rows if r.source == "reported"]
    ours = [r for r in rows if r.source in ("reproduced", "verified") and not r.partial and r.evaluation_set == "test"]
    pairs = []
    for rep in reported:
        for mine in ours:
            if (mine.dataset, mine.method) != (rep.dataset, rep.method):
                continue
            comparison = _compare(rep, mine)
            if comparison.gaps:
                pairs.append(comparison)
    return sorted(pairs, key=lambda c: (c.reported.dataset, c.reported.method, c.reported.name, c.ours.name))


def _compare(rep: Row, mine: Row) -> Comparison:
    protocol, threshold, why = rep.protocol, rep.open_threshold, ""
    if threshold == UNKNOWN:
        threshold, why = mine.open_threshold, "the reported τ is not known"
    elif threshold is None:
        threshold, why = mine.open_threshold, "the reported method rejects on its own"
    elif mine.open_threshold is None:
        threshold, why = None, "our method rejects on its own"  # a threshold would change nothing
    metrics, rescored = mine.metrics, False
    if (protocol, threshold) != (mine.protocol, mine.open_threshold):
        found = rescore(mine, protocol, threshold)
        if isinstance(found, str):
            protocol, threshold, why = mine.protocol, mine.open_threshold, f"not re-scored: {found}"
        else:
            (metrics, threshold), rescored = found, True
    gaps = [
        (key, rep.metrics[key], metrics[key], metrics[key] - rep.metrics[key])
        for key in PAPER_KEYS
        if rep.metrics.get(key) is not None and metrics.get(key) is not None
    ]
    comparison = Comparison(rep, mine, gaps, protocol, threshold, rescored)
    if not (comparison.same_protocol and comparison.same_threshold):
        comparison.mismatch = why
    return comparison


def rescore(row: Row, protocol: str, threshold: float | None) -> tuple[dict[str, float | None], float | None] | str:
    """Our row's metrics (mean over its runs) recomputed under ``protocol`` and ``threshold``,
    with the threshold that applied (None when the method rejects on its own); or why that is
    not possible."""
    if row.kind != "run":
        return "a leaderboard entry carries no predictions"
    results = []
    for run in row.runs:
        preds, split = predictions_file(run), recorded_split_dir(run)
        if preds is None:
            return f"{run.path.parent.name}: no predictions/test.npz"
        if split is None or not SplitDir.exists(split):
            return f"{run.path.parent.name}: the split it was scored on is not at its recorded place"
        try:
            results.append(_evaluate(str(preds), preds.stat().st_mtime_ns, str(split), protocol,
                                     DEFAULT_THRESHOLD if threshold is None else float(threshold),
                                     run.results.get("method"), run.results.get("split_fingerprint")))
        except OltrError as exc:
            return f"{run.path.parent.name}: {exc}"
    mean, _ = aggregate([metrics for metrics, _ in results])
    return mean, results[0][1]


@lru_cache(maxsize=64)
def _evaluate(preds: str, modified: int, split_dir: str, protocol: str, threshold: float, method: str | None,
              fingerprint: str | None) -> tuple[dict[str, float | None], float | None]:
    """Cached per file version (``modified``): the tables and the site compare the same runs."""
    from oltr_bench.metrics.evaluate import evaluate
    from oltr_bench.metrics.predictions import load_predictions

    split = _split(split_dir)
    if split.fingerprint != fingerprint:
        raise OltrError(f"the split at its recorded place ({Path(split_dir).name}) is not the one it was scored on")
    results = evaluate(load_predictions(preds, split, "test"), split, which="test", protocol=protocol, threshold=threshold, method=method)
    return results["metrics"], results["open_threshold"]


@lru_cache(maxsize=4)
def _split(path: str):
    from oltr_bench.splits.format import load_split_dir

    return load_split_dir(path)

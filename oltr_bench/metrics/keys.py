"""The metric keys of SPEC.md §3: the one list every table, page, entry schema and summary uses.

Each key has a label, a group (what it measures), the direction in which it is better, and
whether it depends on the open threshold τ (so two numbers are comparable only at the same τ).
The definitions themselves are the functions of :mod:`oltr_bench.metrics`.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class MetricKey:
    key: str
    label: str
    group: str  # closed | open | detection | calibration | open_samples
    higher_is_better: bool = True
    uses_threshold: bool = False  # depends on the open threshold τ


METRICS: tuple[MetricKey, ...] = (
    MetricKey("top1", "Top-1", "closed"),
    MetricKey("many", "Many", "closed"),
    MetricKey("medium", "Medium", "closed"),
    MetricKey("few", "Few", "closed"),
    MetricKey("open_top1", "Open top-1", "open", uses_threshold=True),
    MetricKey("open_many", "Open many", "open", uses_threshold=True),
    MetricKey("open_medium", "Open medium", "open", uses_threshold=True),
    MetricKey("open_few", "Open few", "open", uses_threshold=True),
    MetricKey("open_f1", "Open F", "open", uses_threshold=True),
    MetricKey("auroc", "AUROC", "detection"),
    MetricKey("aupr_in", "AUPR-in", "detection"),
    MetricKey("aupr_out", "AUPR-out", "detection"),
    MetricKey("fpr95", "FPR@95", "detection", higher_is_better=False),
    MetricKey("oscr", "OSCR", "detection"),
    MetricKey("ece", "ECE", "calibration", higher_is_better=False),
    MetricKey("macro_f1", "Macro-F1", "closed"),
    MetricKey("open_accept_rate", "Open accepted", "open_samples", higher_is_better=False, uses_threshold=True),
    MetricKey("open_absorbed_many", "Absorbed by many", "open_samples", uses_threshold=True),
    MetricKey("open_absorbed_medium", "Absorbed by medium", "open_samples", uses_threshold=True),
    MetricKey("open_absorbed_few", "Absorbed by few", "open_samples", uses_threshold=True),
)

BY_KEY = {m.key: m for m in METRICS}
METRIC_KEYS = tuple(m.key for m in METRICS)
GROUP_TITLES = {"closed": "closed set", "open": "open set", "detection": "detection", "calibration": "calibration",
                "open_samples": "open samples"}

TABLE_KEYS = ("many", "medium", "few", "top1", "open_f1", "auroc", "fpr95", "oscr")
"""The columns of the result tables."""
OPEN_SHOT_KEYS = ("open_many", "open_medium", "open_few")
"""Shot accuracies with rejection (for published rows that report only those)."""
PAPER_KEYS = ("many", "medium", "few", "top1", "open_many", "open_medium", "open_few", "open_f1")
"""What a paper's OLTR table reports: compared between reported and reproduced rows."""
HEADLINE_KEYS = ("open_f1", "few")
"""What a leaderboard page ranks by: open F (under the table's protocol), then few-shot accuracy."""
SITE_GROUPS = ("closed", "open", "detection", "calibration")
"""The column groups of a site page, each shown or hidden as a whole."""


def label(key: str) -> str:
    return BY_KEY[key].label


def columns(keys: tuple[str, ...]) -> tuple[tuple[str, str], ...]:
    """``(key, label)`` pairs."""
    return tuple((key, label(key)) for key in keys)


def in_group(group: str) -> tuple[str, ...]:
    return tuple(m.key for m in METRICS if m.group == group)


def page_keys(group: str) -> tuple[str, ...]:
    """A group's keys in page order: the table columns first (as in :data:`TABLE_KEYS`), then the rest."""
    keys = in_group(group)
    return tuple(k for k in TABLE_KEYS if k in keys) + tuple(k for k in keys if k not in TABLE_KEYS)

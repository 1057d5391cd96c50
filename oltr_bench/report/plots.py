"""The plots of an entry or run page (matplotlib, Agg backend, SVG files next to the page).

Each plot is described by a :class:`PlotSpec` (its kind and the numbers it draws); the file name
carries a hash of that description, so a site rebuilt into the same folder reuses every plot
whose numbers did not change instead of drawing it again. Plots whose data are missing (results
from an older oltr-bench, or a curve that is undefined) are skipped with a note saying why.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import shutil
from dataclasses import dataclass, field
from functools import cached_property, lru_cache
from importlib.metadata import version
from pathlib import Path
from typing import Any, Callable, Sequence

from oltr_bench.errors import OltrError
from oltr_bench.formats.jsonio import read_json
from oltr_bench.protocols import FEW_THRESHOLD, MANY_THRESHOLD, PROTOCOLS
from oltr_bench.report.rows import Row
from oltr_bench.splits.format import MANIFEST, SplitDir

PLOT_VERSION = "1"  # bump when the drawing code changes, so cached plots are redrawn
MAX_CURVE_POINTS = 1500
COLORS = ("#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b")
BAND_COLORS = {"few": "#fde0dd", "medium": "#fff7bc", "many": "#e5f5e0"}


@dataclass
class PlotSpec:
    kind: str
    title: str
    data: dict[str, Any]

    @cached_property
    def file_name(self) -> str:
        payload = json.dumps({"kind": self.kind, "title": self.title, "data": self.data, "v": PLOT_VERSION,
                              "mpl": _matplotlib_version()}, sort_keys=True, allow_nan=True)
        return f"{self.kind}-{hashlib.sha256(payload.encode()).hexdigest()[:12]}.svg"


@lru_cache(maxsize=1)
def _matplotlib_version() -> str:
    return version("matplotlib")


@dataclass
class PagePlots:
    """What a page shows: the plots to draw and a note for each plot that could not be drawn."""

    specs: list[PlotSpec] = field(default_factory=list)
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (title, reason)


def _thin(xs: Sequence[float], ys: Sequence[float]) -> tuple[list[float], list[float]]:
    """At most MAX_CURVE_POINTS points, evenly spaced along the curve, first and last kept."""
    n = len(xs)
    if n <= MAX_CURVE_POINTS:
        return list(xs), list(ys)
    step = (n - 1) / (MAX_CURVE_POINTS - 1)
    idx = sorted({round(i * step) for i in range(MAX_CURVE_POINTS)})
    return [xs[i] for i in idx], [ys[i] for i in idx]


def _curve(results: dict[str, Any], name: str, x: str, y: str) -> tuple[list[float], list[float]] | None:
    curve = (results.get("curves") or {}).get(name)
    if not isinstance(curve, dict) or not isinstance(curve.get(x), list) or not isinstance(curve.get(y), list):
        return None
    if not curve[x] or len(curve[x]) != len(curve[y]):
        return None
    return _thin(curve[x], curve[y])


def _seed_label(row: Row, i: int) -> str:
    return f"seed {row.seeds[i]}" if i < len(row.seeds) else f"run {i + 1}"


def _train_counts(row: Row) -> list[int] | None:
    """Per-class training counts from results.json, else from the run's split manifest."""
    for record in row.runs:
        counts = record.results.get("train_counts")
        if isinstance(counts, list) and counts:
            return counts
    for record in row.runs:
        split_dir = (record.manifest or {}).get("split_dir")
        if split_dir and SplitDir.exists(split_dir):
            try:
                counts = read_json(Path(split_dir) / MANIFEST, "a split manifest").get("train_counts")
            except OltrError:
                continue
            if isinstance(counts, list) and counts:
                return counts
    return None


def _mean_per_class(row: Row) -> list[float | None] | None:
    lists = [r.results.get("per_class_acc") for r in row.runs if isinstance(r.results.get("per_class_acc"), list)]
    if not lists or len({len(x) for x in lists}) != 1:
        return None
    out: list[float | None] = []
    for values in zip(*lists):
        xs = [v for v in values if isinstance(v, (int, float))]
        out.append(sum(xs) / len(xs) if xs else None)
    return out


def page_plots(row: Row) -> PagePlots:
    """The plots of one row's page, and why any of them is missing."""
    page = PagePlots()
    groups = {"closed": [row.metrics.get(k) for k in ("many", "medium", "few")],
              "open": [row.metrics.get(k) for k in ("open_many", "open_medium", "open_few")],
              "closed_std": [row.std.get(k) for k in ("many", "medium", "few")],
              "open_std": [row.std.get(k) for k in ("open_many", "open_medium", "open_few")]}
    if any(v is not None for v in groups["closed"] + groups["open"]):
        page.specs.append(PlotSpec("shot-groups", "Accuracy by shot group", groups))
    else:
        page.skipped.append(("Accuracy by shot group", "no many/medium/few accuracies"))
    if row.kind != "run":
        return page

    counts, acc = _train_counts(row), _mean_per_class(row)
    title = "Per-class accuracy against training count"
    if counts is None:
        page.skipped.append((title, "results.json has no train_counts and the run's split manifest was not found"))
    elif acc is None:
        page.skipped.append((title, "results.json has no per_class_acc"))
    elif len(counts) != len(acc):
        page.skipped.append((title, f"train_counts has {len(counts)} classes but per_class_acc has {len(acc)}"))
    else:
        page.specs.append(PlotSpec("per-class", title, {"counts": counts, "acc": acc, "protocol": row.protocol}))

    curves = [
        ("open-f1", "Open-set F-measure against the threshold", "open_f1_sweep", "threshold", "open_f1"),
        ("roc", "ROC (known = positive)", "roc", "fpr", "tpr"),
        ("oscr", "OSCR: correct classification against open-set false positives", "oscr", "fpr", "ccr"),
    ]
    for kind, title, name, x, y in curves:
        lines = [_curve(r.results, name, x, y) for r in row.runs]
        if not any(lines):
            page.skipped.append((title, f"results.json has no curves.{name} (results from an older oltr-bench, or the curve is undefined)"))
            continue
        data = {"lines": [{"label": _seed_label(row, i), "x": c[0], "y": c[1]} for i, c in enumerate(lines) if c]}
        if kind == "open-f1":
            data["threshold"] = row.open_threshold if isinstance(row.open_threshold, (int, float)) else None
        if kind == "roc":
            data["auroc"] = row.metrics.get("auroc")
        if kind == "oscr":
            data["oscr"] = row.metrics.get("oscr")
        page.specs.append(PlotSpec(kind, title, data))

    bins = []
    for i, r in enumerate(row.runs):
        rel = (r.results.get("curves") or {}).get("reliability")
        keys = ("bin_lower", "bin_upper", "confidence", "accuracy", "count")
        if isinstance(rel, dict) and all(isinstance(rel.get(k), list) for k in keys):
            bins.append({"label": _seed_label(row, i), **{k: rel[k] for k in keys}})
    if bins:
        page.specs.append(PlotSpec("reliability", "Reliability diagram (known samples)", {"runs": bins, "ece": row.metrics.get("ece")}))
    else:
        page.skipped.append(("Reliability diagram", "results.json has no curves.reliability (results from an older oltr-bench)"))
    return page


# -- drawing ---------------------------------------------------------------------------------------

def _figure(width: float = 5.2, height: float = 3.4):
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    plt.rcParams.update({"svg.hashsalt": "oltr-bench", "font.size": 9, "axes.spines.top": False, "axes.spines.right": False})
    fig, ax = plt.subplots(figsize=(width, height), layout="constrained")
    return plt, fig, ax


def _draw_shot_groups(ax, data):
    import numpy as np

    names = ["many", "medium", "few"]
    x = np.arange(3)
    series = [("closed", "closed set", COLORS[0]), ("open", "open-set setting (with rejection)", COLORS[1])]
    present = [s for s in series if any(v is not None for v in data[s[0]])]
    width = 0.8 / len(present)
    for i, (key, label, color) in enumerate(present):
        values = [np.nan if v is None else v for v in data[key]]
        errors = [0 if e is None else e for e in data[f"{key}_std"]]
        bars = ax.bar(x + (i - (len(present) - 1) / 2) * width, values, width, yerr=errors if any(errors) else None,
                      label=label, color=color, capsize=3)
        ax.bar_label(bars, labels=["" if v is None else f"{v:.3f}" for v in data[key]], fontsize=7, padding=2)
    ax.set_xticks(x, names)
    ax.set_ylim(0, 1.25)  # headroom: the legend sits above the bars and their labels
    ax.set_yticks([0, 0.2, 0.4, 0.6, 0.8, 1.0])
    ax.set_ylabel("accuracy")
    ax.legend(loc="upper center", ncols=len(present), frameon=False, fontsize=8)


def _draw_per_class(ax, data):
    import numpy as np

    counts = np.asarray(data["counts"], dtype=float)
    acc = np.asarray([np.nan if a is None else a for a in data["acc"]], dtype=float)
    proto = PROTOCOLS.get(data["protocol"])
    lo, hi = max(counts.min(), 1) * 0.8, counts.max() * 1.25
    bands = [("few", lo, FEW_THRESHOLD), ("medium", FEW_THRESHOLD, MANY_THRESHOLD), ("many", MANY_THRESHOLD, hi)]
    for name, a, b in bands:
        if b > lo and a < hi:
            ax.axvspan(max(a, lo), min(b, hi), color=BAND_COLORS[name], zorder=0)
            ax.text(math.sqrt(max(a, lo) * min(b, hi)), 1.06, name, ha="center", va="bottom", fontsize=8)
    groups = proto.groups(data["counts"]) if proto else None
    ax.scatter(np.maximum(counts, 1), acc, s=8, alpha=0.6, color=COLORS[0], linewidths=0, label="class")
    if groups is not None:
        for g, (name, a, b) in enumerate(reversed(bands)):
            vals = acc[(groups == g) & ~np.isnan(acc)]
            if vals.size:
                ax.hlines(vals.mean(), max(a, lo), min(b, hi), color=COLORS[1], linewidth=2, label="group mean" if g == 0 else None)
    ax.set_xscale("log")
    ax.set_xlim(lo, hi)
    ax.set_ylim(-0.03, 1.12)
    ax.set_xlabel("training images of the class (log scale)")
    ax.set_ylabel("closed-set accuracy")
    edge = (proto or PROTOCOLS["oltr"]).rule
    ax.legend(loc="best", frameon=True, framealpha=0.8, title=f"{data['protocol']}: {edge}", title_fontsize=7, fontsize=7)


def _draw_lines(ax, data, xlabel, ylabel, diagonal=False):
    for i, line in enumerate(data["lines"]):
        ax.plot(line["x"], line["y"], color=COLORS[i % len(COLORS)], linewidth=1.4, label=line["label"])
    if diagonal:
        ax.plot([0, 1], [0, 1], color="#999999", linestyle=":", linewidth=1)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1.02)
    if len(data["lines"]) > 1:
        ax.legend(loc="lower right", frameon=False)


def _draw_open_f1(ax, data):
    _draw_lines(ax, data, "open threshold τ on the known score", "open-set F-measure")
    xs = [x for line in data["lines"] for x in line["x"]]
    if min(xs) < max(xs):
        ax.set_xlim(min(xs), max(xs))
    if data.get("threshold") is not None:
        ax.axvline(data["threshold"], color="#555555", linestyle="--", linewidth=1)
        ax.text(data["threshold"], 1.0, f" τ = {data['threshold']:g}", fontsize=8, va="top")


def _draw_roc(ax, data):
    _draw_lines(ax, data, "false-positive rate (open samples accepted)", "true-positive rate (known accepted)", diagonal=True)
    if data.get("auroc") is not None:
        ax.set_title(f"AUROC {data['auroc']:.3f}", fontsize=9)


def _draw_oscr(ax, data):
    _draw_lines(ax, data, "false-positive rate (open samples accepted)", "correct classification rate")
    if data.get("oscr") is not None:
        ax.set_title(f"OSCR {data['oscr']:.3f}", fontsize=9)


def _draw_reliability(ax, data):
    first = data["runs"][0]
    lower, upper = first["bin_lower"], first["bin_upper"]
    acc = [float("nan") if a is None else a for a in first["accuracy"]]
    ax.bar(lower, acc, [u - l for l, u in zip(lower, upper)], align="edge", color=COLORS[0], alpha=0.7,
           edgecolor="white", label=f"accuracy ({first['label']})")
    for i, run in enumerate(data["runs"][1:], start=1):
        centers = [(l + u) / 2 for l, u in zip(run["bin_lower"], run["bin_upper"])]
        ax.plot(centers, [float("nan") if a is None else a for a in run["accuracy"]], "o", ms=3,
                color=COLORS[i % len(COLORS)], label=f"accuracy ({run['label']})")
    ax.plot([0, 1], [0, 1], color="#333333", linestyle="--", linewidth=1, label="perfect calibration", zorder=3)
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    ax.set_xlabel("confidence (max softmax probability)")
    ax.set_ylabel("accuracy")
    if data.get("ece") is not None:
        ax.set_title(f"ECE {data['ece']:.3f}", fontsize=9)
    ax.legend(loc="upper left", frameon=False, fontsize=7)


DRAW: dict[str, Callable] = {
    "shot-groups": _draw_shot_groups,
    "per-class": _draw_per_class,
    "open-f1": _draw_open_f1,
    "roc": _draw_roc,
    "oscr": _draw_oscr,
    "reliability": _draw_reliability,
}


def draw(spec: PlotSpec, path: Path) -> None:
    plt, fig, ax = _figure()
    try:
        DRAW[spec.kind](ax, spec.data)
        fig.savefig(path, format="svg", metadata={"Date": None})
    finally:
        plt.close(fig)


class PlotCache:
    """Plot files of an earlier build of the site, by file name (the name hashes the content)."""

    def __init__(self, previous_site: Path | None):
        self.files: dict[str, Path] = {}
        if previous_site is not None and previous_site.is_dir():
            self.files = {p.name: p for p in previous_site.rglob("*.svg")}
        self.drawn = 0
        self.reused = 0

    def materialize(self, spec: PlotSpec, folder: Path) -> Path:
        """Put the plot into ``folder``: a link or copy of the earlier file, else a new drawing."""
        target = folder / spec.file_name
        cached = self.files.get(spec.file_name)
        if cached is not None and cached.is_file():
            try:
                os.link(cached, target)
            except OSError:
                shutil.copyfile(cached, target)
            self.reused += 1
        else:
            draw(spec, target)
            self.files[spec.file_name] = target
            self.drawn += 1
        return target

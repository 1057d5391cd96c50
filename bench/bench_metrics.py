"""Time the full metric set on an ImageNet-LT-shaped problem (issue 4's benchmark).

50,000 known samples (50 per class) + 18,000 open samples, 1000 classes, float32 logits, and the
released ImageNet-LT train counts (1280 down to 5 per class; 385 / 479 / 136 classes many /
medium / few). Reports the median time of each metric group over --repeats runs, the end-to-end
``compute_metrics`` time, the time to load and verify the split and to load and validate a
predictions file (``evaluate``; the metrics target excludes both), and peak memory.

    python bench/bench_metrics.py [--repeats 5] [--json OUT]

Targets (2 CPU cores): metrics <= 1 s, peak memory <= 1 GiB.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import tempfile
import time
import tracemalloc
from pathlib import Path

import numpy as np

from oltr_bench.metrics import (
    aupr_in,
    aupr_out,
    auroc,
    closed_predictions,
    compute_metrics,
    ece,
    fpr_at_tpr,
    group_accuracies,
    macro_f1,
    open_absorption,
    open_decision,
    open_f1_sweep,
    open_f_measure,
    oscr,
    oscr_points,
    per_class_accuracy,
    reliability,
    roc_points,
    top1,
)
from oltr_bench.metrics.evaluate import evaluate
from oltr_bench.metrics.predictions import load_predictions, write_predictions
from oltr_bench.protocols import get_protocol
from oltr_bench.splits.format import load_split_dir, write_split_dir
from oltr_bench.splits.profile import released_counts

NUM_CLASSES, PER_CLASS, NUM_OPEN = 1000, 50, 18_000


def problem(seed: int = 0):
    """Labels, train counts and logits shaped like ImageNet-LT's test + open set (about 40% top-1)."""
    rng = np.random.default_rng(seed)
    train_counts = np.asarray(released_counts("imagenet_lt"))
    labels = np.r_[np.repeat(np.arange(NUM_CLASSES), PER_CLASS), -np.ones(NUM_OPEN, dtype=int)]
    logits = rng.standard_normal((len(labels), NUM_CLASSES), dtype=np.float32)
    known = np.flatnonzero(labels >= 0)
    # A head-biased classifier: the true class gets a boost that grows with its training count.
    boost = 2.0 + 1.5 * np.log(train_counts[labels[known]]) / np.log(1280)
    logits[known, labels[known]] += boost.astype(np.float32)
    return labels, train_counts, logits


def median_time(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def groups_of_metrics(labels, train_counts, logits, protocol="oltr", threshold=0.1):
    """The metric groups as ``compute_metrics`` runs them, each a callable, in order."""
    proto = get_protocol(protocol)
    groups = proto.groups(train_counts)
    known = labels >= 0
    state = {}

    def softmax_group():
        state["closed"], state["conf"] = closed_predictions(logits)
        state["decision"] = open_decision(state["closed"], state["conf"], threshold)

    def closed_set():
        acc = per_class_accuracy(state["closed"], labels, NUM_CLASSES)
        group_accuracies(acc, groups), top1(state["closed"], labels), macro_f1(state["closed"], labels)

    def open_set():
        acc = per_class_accuracy(state["decision"], labels, NUM_CLASSES)
        group_accuracies(acc, groups), top1(state["decision"], labels)
        open_f_measure(state["decision"], labels, proto), open_absorption(state["decision"], labels, groups)

    def detection():
        s = state["conf"]
        auroc(s, labels), aupr_in(s, labels), aupr_out(s, labels), fpr_at_tpr(s, labels)

    def oscr_group():
        oscr(state["closed"], state["conf"], labels)

    def calibration():
        correct = state["closed"][known] == labels[known]
        ece(state["conf"][known], correct), reliability(state["conf"][known], correct)

    def curves():
        open_f1_sweep(state["closed"], state["conf"], labels, proto)
        roc_points(state["conf"], labels), oscr_points(state["closed"], state["conf"], labels)

    return [
        ("softmax: argmax, max p (float64 blocks)", softmax_group),
        ("closed set: top1, many/medium/few, per-class, macro-F1", closed_set),
        ("open set: open_top1/many/medium/few, open F, absorption", open_set),
        ("detection: AUROC, AUPR-in/out, FPR@95", detection),
        ("OSCR", oscr_group),
        ("calibration: ECE, reliability bins", calibration),
        ("curves: F sweep (201 t), ROC, OSCR (<= 201 points)", curves),
    ]


def split_for(labels, train_counts, root: Path):
    """A split directory whose test + open lists hold the benchmark's ids (for timing ``evaluate``)."""
    train = [(f"train/{c}/{i}.JPEG", c) for c in range(NUM_CLASSES) for i in range(train_counts[c])]
    test = [(f"test/{i}.JPEG", int(y)) for i, y in enumerate(labels) if y >= 0]
    opened = [(f"open/{i}.JPEG", -1) for i in range(int((labels < 0).sum()))]
    val = [(f"val/{c}.JPEG", c) for c in range(NUM_CLASSES)]
    lists = {"train": train, "val": val, "test": test, "open": opened}
    roots = {name: "images" for name in lists}
    classes = [f"c{c:04d}" for c in range(NUM_CLASSES)]
    split = write_split_dir(root / "split", dataset="bench", classes=classes, lists=lists, roots=roots, source={"kind": "bench"})
    return split, [path for path, _ in test + opened]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--json", type=Path, help="also write the numbers as JSON")
    args = parser.parse_args()

    labels, train_counts, logits = problem()
    rows = []
    for name, fn in groups_of_metrics(labels, train_counts, logits):
        fn()  # warm-up; also fills the state later groups read
        rows.append((name, median_time(fn, args.repeats)))
    total = median_time(lambda: compute_metrics(labels, train_counts, logits=logits), args.repeats)

    tracemalloc.start()
    result = compute_metrics(labels, train_counts, logits=logits)
    _, metrics_peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    metrics_rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # Linux reports KiB

    logits_mib = logits.nbytes / 2**20
    with tempfile.TemporaryDirectory() as tmp:
        written, ids = split_for(labels, train_counts, Path(tmp))
        # What `oltr-bench evaluate` does first: sha256 of the lists, then parse and check them.
        split_s = median_time(lambda: load_split_dir(written.path), args.repeats)
        split = load_split_dir(written.path)
        write_predictions(Path(tmp) / "p.npz", ids=ids, logits=logits, split_fingerprint=split.fingerprint)
        logits = None  # as in a fresh `oltr-bench evaluate`: only the loaded copy is in memory
        start = time.perf_counter()
        preds = load_predictions(Path(tmp) / "p.npz")
        load_s = time.perf_counter() - start
        start = time.perf_counter()
        evaluated = evaluate(preds, split)
        evaluate_s = time.perf_counter() - start
    assert evaluated["metrics"] == result["metrics"]
    assert result["groups"] == {"many": 385, "medium": 479, "few": 136}, result["groups"]  # ImageNet-LT's, as in the paper
    peak_rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # Linux reports KiB

    m = result["metrics"]
    print(f"ImageNet-LT-shaped problem: {int((labels >= 0).sum()):,} known + {NUM_OPEN:,} open samples, {NUM_CLASSES} classes, "
          f"float32 logits ({logits_mib:.0f} MiB); groups {result['groups']}")
    print(f"machine: {os.cpu_count()} CPUs, {platform.processor() or platform.machine()}, load average {os.getloadavg()[0]:.2f}; "
          f"median of {args.repeats} runs\n")
    print("| metric group | median time (s) |\n|---|---|")
    for name, seconds in rows:
        print(f"| {name} | {seconds:.3f} |")
    print(f"| **all metrics (`compute_metrics`)** | **{total:.3f}** |")
    print(f"| load and verify the split (`load_split_dir`, not in the target) | {split_s:.3f} |")
    print(f"| load the .npz (`load_predictions`, not in the target) | {load_s:.3f} |")
    print(f"| validate + all metrics (`evaluate`, not in the target) | {evaluate_s:.3f} |")
    print(f"\npeak memory (RSS): {metrics_rss / 2**20:.0f} MiB through the metrics (Python, numpy, scikit-learn, the "
          f"{logits_mib:.0f} MiB of logits and every metric run); {peak_rss / 2**20:.0f} MiB after also writing, "
          f"loading and evaluating the .npz. Allocated by one compute_metrics call: {metrics_peak / 2**20:.0f} MiB")
    print(f"values: top1 {m['top1']:.4f}, many {m['many']:.4f}, medium {m['medium']:.4f}, few {m['few']:.4f}, "
          f"open_f1 {m['open_f1']:.4f}, auroc {m['auroc']:.4f}, oscr {m['oscr']:.4f}, ece {m['ece']:.4f}")
    if args.json:
        args.json.write_text(json.dumps({
            "groups_s": dict(rows), "compute_metrics_s": total, "load_split_s": split_s, "load_s": load_s, "evaluate_s": evaluate_s,
            "metrics_peak_rss_bytes": metrics_rss, "peak_rss_bytes": peak_rss, "compute_metrics_peak_bytes": metrics_peak, "load_average": os.getloadavg()[0],
        }, indent=2) + "\n")


if __name__ == "__main__":
    main()

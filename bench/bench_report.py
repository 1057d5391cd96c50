"""Benchmark: tables and the leaderboard site for 500 inputs across 3 datasets (issue 7: <= 5 s on 2 cores).

Generates synthetic leaderboard entries and run directories (ImageNet-LT-sized results: 1000
classes, per-class accuracies, 2000-point curves), then times, as medians over repeats:
loading (with schema checks) and seed aggregation, the Markdown/CSV/LaTeX tables, the site
without plots, the site with every plot reused from the previous build, and the end-to-end CLI
(`oltr-bench report --html`, including interpreter start-up). The first build with plots
(every plot drawn) is timed once and reported separately: it is the one-time cost the cache avoids.

    python bench/bench_report.py [--inputs 500] [--repeats 3] [--keep DIR]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import yaml

from oltr_bench.config import config_hash
from oltr_bench.report.collect import collect
from oltr_bench.report.rows import build_rows
from oltr_bench.report.site import build_site
from oltr_bench.report.tables import render

DATASETS = {"imagenet_lt": (1000, "resnet10"), "places_lt": (365, "resnet152"), "ms1m_lt": (500, "resnet50")}
PROTOCOLS = ("oltr", "oltr-2019", "oltr-code")
METRICS = ("top1", "many", "medium", "few", "open_top1", "open_many", "open_medium", "open_few", "open_f1",
           "auroc", "aupr_in", "aupr_out", "fpr95", "oscr", "ece", "macro_f1")


def make_entries(root: Path, n: int, rng: np.random.Generator) -> None:
    for i in range(n):
        dataset = list(DATASETS)[i % 3]
        metrics = {k: round(float(rng.uniform(0.05, 0.95)), 4) for k in METRICS if rng.random() < 0.8}
        metrics["open_f1"] = round(float(rng.uniform(0.2, 0.6)), 4)
        entry = {"format": "oltr-bench-entry/1", "name": f"Method {i} <variant & co>", "method": f"m{i % 40}",
                 "dataset": dataset, "protocol": PROTOCOLS[i % 3], "source": "reported", "verified": False,
                 "paper": {"title": f"Paper {i}", "venue": "CVPR", "year": 2019 + i % 6, "url": f"https://example.org/{i}"},
                 "backbone": ["resnet10", "resnet50", "resnet152", "vit-b16"][i % 4], "pretraining": ["none", "imagenet-1k", "clip"][i % 3],
                 "extra_data": i % 5 == 0, "epochs": [30, 90, 180][i % 3], "open_threshold": 0.1, "metrics": metrics,
                 "notes": "synthetic entry " * 5}
        path = root / "lb" / dataset / f"entry-{i:04d}.json"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(entry, indent=2), encoding="utf-8")


def make_runs(root: Path, configs: int, seeds: int, rng: np.random.Generator) -> None:
    for c in range(configs):
        dataset = list(DATASETS)[c % 3]
        classes, backbone = DATASETS[dataset]
        counts = np.sort(rng.pareto(1.2, classes) * 20 + 5).astype(int)[::-1].tolist()
        for seed in range(seeds):
            config = {"method": f"method{c}", "dataset": dataset, "seed": seed, "model": {"backbone": backbone, "weights": None},
                      "train": {"epochs": 30 + c, "lr": {"features": 0.1}}}
            run = root / "runs" / dataset / f"method{c}" / f"run-{seed}-{config_hash(config)[:8]}"
            run.mkdir(parents=True)
            (run / "config.yaml").write_text(yaml.safe_dump(config), encoding="utf-8")
            (run / "manifest.json").write_text(json.dumps({"status": "complete", "seed": seed, "training": {"epochs": 30 + c},
                                                           "config_hash": config_hash(config), "versions": {"oltr_bench": "0.1.0"}}))
            grid = np.linspace(0, 1, 2000)
            results = {
                "format": "oltr-bench-results/1", "dataset": dataset, "method": f"method{c}", "split_fingerprint": "f" * 64,
                "evaluation_set": "test", "protocol": "oltr", "open_threshold": 0.1, "partial": False,
                "metrics": {k: float(rng.uniform(0.05, 0.95)) for k in METRICS},
                "per_class_acc": rng.uniform(0, 1, classes).round(4).tolist(), "train_counts": counts,
                "curves": {
                    "open_f1_sweep": {"threshold": grid[::20].tolist(), "open_f1": np.sin(grid[::20] * 3).clip(0).tolist()},
                    "roc": {"fpr": grid.tolist(), "tpr": np.sqrt(grid).tolist()},
                    "oscr": {"fpr": grid.tolist(), "ccr": (0.6 * np.sqrt(grid)).tolist()},
                    "reliability": {"bin_lower": np.linspace(0, 1, 16)[:-1].tolist(), "bin_upper": np.linspace(0, 1, 16)[1:].tolist(),
                                    "confidence": np.linspace(0.03, 0.97, 15).tolist(), "accuracy": np.linspace(0.0, 0.9, 15).tolist(),
                                    "count": [100] * 15},
                },
            }
            (run / "results.json").write_text(json.dumps(results), encoding="utf-8")


def timed(fn, repeats: int) -> tuple[float, object]:
    times, value = [], None
    for _ in range(repeats):
        start = time.perf_counter()
        value = fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times), value


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--inputs", type=int, default=500, help="entries + run directories in all")
    parser.add_argument("--run-configs", type=int, default=20, help="run configurations (3 seeds each) among the inputs")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--keep", type=Path, help="build in this folder and keep it")
    args = parser.parse_args()
    work = args.keep or Path(tempfile.mkdtemp(prefix="bench-report-"))
    work.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    run_dirs = args.run_configs * 3
    make_entries(work, args.inputs - run_dirs, rng)
    make_runs(work, args.run_configs, 3, rng)
    inputs = [work / "runs"]

    def load():
        return build_rows(collect(inputs, leaderboard_dirs=[work / "lb"]))

    t_load, rows = timed(load, args.repeats)
    t_tables = {fmt: timed(lambda: render(rows, fmt), args.repeats)[0] for fmt in ("md", "csv", "latex")}
    site = work / "site"
    t_site_noplots, _ = timed(lambda: build_site(load(), site, plots=False), args.repeats)
    shutil.rmtree(site)
    start = time.perf_counter()
    cold = build_site(load(), site)
    t_cold = time.perf_counter() - start
    t_warm, warm = timed(lambda: build_site(load(), site), args.repeats)
    cli = [sys.executable, "-m", "oltr_bench", "report", str(work / "runs"), str(work / "lb"), "--no-leaderboard", "--html", str(site)]
    t_cli, _ = timed(lambda: subprocess.run(cli, check=True, capture_output=True, env={**os.environ, "TQDM_DISABLE": "1"}), args.repeats)
    summary = {
        "inputs": args.inputs, "entry_files": args.inputs - run_dirs, "run_dirs": run_dirs, "rows": len(rows),
        "pages": warm.pages, "plots": cold.plots_drawn + cold.plots_reused,
        "load_and_aggregate_s": round(t_load, 3), **{f"table_{k}_s": round(v, 3) for k, v in t_tables.items()},
        "site_no_plots_s": round(t_site_noplots, 3), "site_plots_cached_s": round(t_warm, 3),
        "site_plots_cold_s": round(t_cold, 3), "cli_report_html_cached_s": round(t_cli, 3),
        "cpus": os.cpu_count(), "load_avg": os.getloadavg()[0],
    }
    print(json.dumps(summary, indent=2))
    if args.keep is None:
        shutil.rmtree(work)


if __name__ == "__main__":
    main()

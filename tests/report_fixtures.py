"""Synthetic run directories and entries with known numbers, for the report and leaderboard tests."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from oltr_bench.config import config_hash

FINGERPRINT = "f" * 64
TRAIN_COUNTS = [400, 250, 120, 90, 60, 40, 25, 15, 8, 5]  # 3 many, 4 medium, 3 few (oltr)


def curves(shift: float = 0.0) -> dict[str, Any]:
    return {
        "open_f1_sweep": {"threshold": [0.0, 0.1, 0.2, 0.5, 0.9], "open_f1": [0.30 + shift, 0.40 + shift, 0.42, 0.35, 0.10]},
        "roc": {"fpr": [0.0, 0.1, 0.4, 1.0], "tpr": [0.0, 0.5, 0.8 + shift, 1.0]},
        "oscr": {"fpr": [0.0, 0.1, 0.4, 1.0], "ccr": [0.0, 0.2, 0.3 + shift, 0.35]},
        "reliability": {"bin_lower": [0.0, 0.5], "bin_upper": [0.5, 1.0], "confidence": [0.3, 0.8],
                        "accuracy": [0.25, 0.7 + shift], "count": [40, 60]},
    }


def make_run(
    root: Path,
    *,
    method: str = "plain",
    dataset: str = "toy_lt",
    seed: int = 0,
    metrics: dict[str, Any] | None = None,
    protocol: str = "oltr",
    threshold: float | None = 0.1,
    partial: bool = False,
    lr: float = 0.1,
    epochs: int = 30,
    backbone: str = "resnet10",
    with_curves: bool = True,
    with_train_counts: bool = True,
    stage1_run: Path | None = None,
    profile: str | None = None,
) -> Path:
    """A completed run directory: config.yaml, manifest.json and results.json (no predictions)."""
    config = {"method": method, "dataset": dataset, "seed": seed, "model": {"backbone": backbone, "weights": None},
              "train": {"epochs": epochs, "lr": {"features": lr, "classifier": lr}}, "eval": {"protocol": protocol}}
    if profile is not None:  # None: a run written before profiles existed
        config["profile"] = profile
    chash = config_hash(config)
    run_dir = Path(root) / dataset / method / f"2025-s{seed}-{chash[:8]}"
    run_dir.mkdir(parents=True)
    (run_dir / "config.yaml").write_text(yaml.safe_dump(config, sort_keys=False), encoding="utf-8")
    manifest = {"format": "oltr-bench-run/1", "status": "complete", "method": method, "dataset": dataset,
                "split_fingerprint": FINGERPRINT, "config_hash": chash, "quick": partial, "seed": seed,
                "stage1_run": str(stage1_run) if stage1_run else None, "training": {"epochs": epochs},
                "versions": {"oltr_bench": "0.1.0"}, "git_sha": "abc123"}
    (run_dir / "manifest.json").write_text(json.dumps(manifest), encoding="utf-8")
    results = {
        "format": "oltr-bench-results/1", "dataset": dataset, "method": method, "split_fingerprint": FINGERPRINT,
        "evaluation_set": "test", "protocol": protocol, "open_threshold": threshold,
        "metrics": metrics if metrics is not None else {"top1": 0.5, "many": 0.7, "medium": 0.5, "few": 0.2, "open_f1": 0.4},
        "groups": {"many": 3, "medium": 4, "few": 3},
        "per_class_acc": [0.9, 0.8, 0.7, 0.6, 0.5, None, 0.4, 0.3, 0.2, 0.1],
        "counts": {"known": 100, "open": 40}, "partial": partial, "provenance": {"run_dir": str(run_dir), **({"profile": profile} if profile else {})},
    }
    if with_train_counts:
        results["train_counts"] = TRAIN_COUNTS
    if with_curves:
        results["curves"] = curves(0.01 * seed)
    (run_dir / "results.json").write_text(json.dumps(results), encoding="utf-8")
    return run_dir


def list_split(root: Path, dataset: str = "toy_lt", test_per_class: int = 6, open_images: int = 20):
    """A split directory of lists only (no images: enough to score predictions), TRAIN_COUNTS-shaped."""
    from oltr_bench.splits.format import write_split_dir

    classes = range(len(TRAIN_COUNTS))
    lists = {
        "train": [(f"train/c{c}/{i}.png", c) for c in classes for i in range(TRAIN_COUNTS[c])],
        "val": [(f"val/c{c}/0.png", c) for c in classes],
        "test": [(f"test/c{c}/{i}.png", c) for c in classes for i in range(test_per_class)],
        "open": [(f"open/{i}.png", -1) for i in range(open_images)],
    }
    return write_split_dir(Path(root) / dataset, dataset=dataset, classes=[f"c{c}" for c in classes], lists=lists,
                           roots={k: "images" for k in lists}, source={"kind": "test"})


def random_logits(split, seed: int = 0) -> tuple[list[str], np.ndarray]:
    """Ids of the test and open lists and random logits that favour the true class."""
    ids = split.ids("test") + split.ids("open")
    labels = np.array(split.labels("test") + [-1] * len(split.ids("open")))
    rng = np.random.default_rng(seed)
    logits = rng.normal(size=(len(ids), split.num_classes)).astype(np.float32)
    logits[labels >= 0, labels[labels >= 0]] += rng.uniform(0, 6, size=int((labels >= 0).sum())).astype(np.float32)
    return ids, logits


def make_entry(root: Path, slug: str, **fields: Any) -> Path:
    """A valid reported entry file ``<root>/<dataset>/<slug>.json``; ``fields`` override the defaults."""
    entry = {"format": "oltr-bench-entry/1", "name": "Paper method", "method": "plain", "dataset": "toy_lt",
             "protocol": "oltr", "source": "reported", "verified": False,
             "paper": {"title": "A paper", "venue": "CVPR", "year": 2019, "url": "https://example.org/paper"},
             "backbone": "resnet10", "pretraining": "none", "extra_data": False, "epochs": 90, "open_threshold": 0.1,
             "metrics": {"many": 0.6, "medium": 0.45, "few": 0.25, "top1": 0.48, "open_f1": 0.35}}
    entry.update(fields)
    path = Path(root) / entry["dataset"] / f"{slug}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(entry, indent=2), encoding="utf-8")
    return path


def scored_run_dir(root: Path, split, *, tamper: bool = False, seed: int = 0, method: str = "plain") -> tuple[Path, dict[str, Any]]:
    """A run directory on ``split`` whose results.json was computed by ``evaluate`` (protocol
    ``oltr``, τ 0.1) from a full predictions file of random logits that favour the true class."""
    from oltr_bench.metrics.evaluate import evaluate, write_results
    from oltr_bench.metrics.predictions import load_predictions, write_predictions

    ids, logits = random_logits(split, seed)
    run = Path(root) / split.dataset / method / f"run-full-{seed}"
    write_predictions(run / "predictions" / "test.npz", ids=ids, logits=logits, split_fingerprint=split.fingerprint)
    results = evaluate(load_predictions(run / "predictions" / "test.npz"), split, method=method)
    if tamper:
        results["metrics"]["few"] += 0.01
    write_results(run / "results.json", results)
    config = {"method": method, "dataset": split.dataset, "seed": seed, "model": {"backbone": "glyphnet", "weights": None}, "train": {"epochs": 20}}
    (run / "config.yaml").write_text(yaml.safe_dump(config), encoding="utf-8")
    (run / "manifest.json").write_text(json.dumps({"split_dir": str(split.path), "seed": seed, "training": {"epochs": 20}, "config_hash": "x"}), encoding="utf-8")
    return run, results

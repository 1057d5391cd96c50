"""Feature cache: per-epoch time of a classifier-only stage on cached features vs recomputing the backbone.

A generated split (64 classes x 16 JPEGs, 160x120) and OLTR's ResNet-10 at 112 px: a plain
stage-1 run, then a cRT-like stage 2 (frozen backbone, new linear head, class-aware sampling,
batch 128) twice, with ``train.feature_cache`` on and off. Recomputing means what the official
code does: decode, augment and run the frozen backbone every epoch. Per-epoch time from the
second epoch on (the first cached epoch also builds the cache, reported separately).

    python bench/bench_engine_cache.py [--epochs 3] [--workers 2]
"""

from __future__ import annotations

import argparse
import io
import json
import statistics
import tempfile
from pathlib import Path

import numpy as np
from PIL import Image

from oltr_bench.method import Method
from oltr_bench.engine.runner import run_method
from oltr_bench.registry import METHODS
from oltr_bench.splits.format import write_split_dir

CLASSES, PER_CLASS = 64, 16


@METHODS.register("_bench_crt")
class BenchCRT(Method):
    """Benchmark-only cRT: frozen backbone, new linear head, class-aware sampling."""

    stage, init_from, frozen_backbone, sampler = 2, "plain", True, "class_aware"

    def adapt_init_state(self, state):
        return {k: v for k, v in state.items() if not k.startswith("head.")}


def make_split(root: Path):
    rng = np.random.default_rng(0)
    lists = {"train": [], "val": [], "test": []}
    for c in range(CLASSES):
        lists["train"] += [(f"{c}/{i}.jpg", c) for i in range(PER_CLASS)]
        lists["val"] += [(f"{c}/v0.jpg", c)]
        lists["test"] += [(f"{c}/t0.jpg", c)]

    def populate(tmp: Path) -> None:
        for entries in lists.values():
            for path, c in entries:
                (tmp / "img" / path).parent.mkdir(parents=True, exist_ok=True)
                pixels = np.clip(rng.normal(c * 4, 50, (120, 160, 3)), 0, 255).astype(np.uint8)
                buf = io.BytesIO()
                Image.fromarray(pixels).save(buf, "JPEG", quality=90)
                (tmp / "img" / path).write_bytes(buf.getvalue())

    return write_split_dir(root / "cachebench", dataset="cachebench", classes=[str(c) for c in range(CLASSES)], lists=lists,
                           roots={s: "img" for s in lists}, source={"kind": "bench"}, populate=populate)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()
    common = ["model.backbone=resnet10", "model.input_size=112", "model.feat_dim=null", "data.pipeline=parity",
              "data.image_size=112", "data.resize=128", f"data.workers={args.workers}", "train.batch_size=128",
              "train.reference_batch_size=128", f"train.epochs={args.epochs}", "log.every_steps=0"]
    with tempfile.TemporaryDirectory() as tmp:
        split = make_split(Path(tmp))
        runs = Path(tmp) / "runs"
        stage1 = run_method("plain", split, runs_root=runs, overrides=[*common, "train.epochs=1"], progress=False, echo=lambda m: None)
        timings = {}
        for cache in ("true", "false"):
            run_dir = run_method("_bench_crt", split, runs_root=runs, overrides=[*common, f"train.feature_cache={cache}"],
                                 stage1=stage1, progress=False, echo=lambda m: None)
            manifest = json.loads((run_dir / "manifest.json").read_text())
            epochs = [json.loads(line) for line in (run_dir / "train_log.jsonl").read_text().splitlines()]
            steps = epochs[0]["steps"]
            timings[cache] = [steps * 128 / e["images_per_s"] for e in epochs if e["event"] == "epoch"]
            if cache == "true":
                build = manifest["phase_seconds"].get("feature_cache", 0.0)
                print(f"cache built once in {build:.1f} s ({manifest['feature_cache']['level']}, {manifest['feature_cache']['path']})")
    cached, recomputed = statistics.median(timings["true"][1:]), statistics.median(timings["false"][1:])
    print(f"ResNet-10 @112, {CLASSES * PER_CLASS} train images, batch 128, {args.workers} workers")
    print(f"classifier-only epoch on cached features: {cached * 1e3:.1f} ms")
    print(f"classifier-only epoch recomputing the frozen backbone: {recomputed * 1e3:.1f} ms")
    print(f"speed-up: {recomputed / cached:.0f}x (target >= 20x): {'PASS' if recomputed / cached >= 20 else 'FAIL'}")


if __name__ == "__main__":
    main()

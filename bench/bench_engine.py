"""Engine overhead: time per training step of the engine vs a bare PyTorch loop (CPU).

Both train the same model (glyphnet + linear head, channels-last, fp32) with the same SGD
settings on the same batches of the same data: a generated 32x32 PNG split of 20 classes,
read through the same ``ListDataset``, transform and number of loader workers. The bare loop
is what one would write by hand: a persistent DataLoader, forward, cross-entropy, backward,
step. The engine adds what it needs for the protocol and reproducibility: the sample stream
with per-sample augmentation seeds, the method's loss, the non-finite check, logging and the
progress bookkeeping. Per-step time = epoch training time / steps, from the second epoch on
(the first includes worker start-up); medians over alternating repeats.

The development machine is shared, so the default measures CPU time of the training process
with one torch thread and data loading in that process (``--workers 0``): the work each loop
does, unaffected by other processes. ``--wall`` measures wall time instead.

    python bench/bench_engine.py [--repeats 5] [--epochs 3] [--workers 0] [--threads 1] [--wall]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from oltr_bench.config import resolve_config
from oltr_bench.data.lists import ListDataset, make_loader
from oltr_bench.data.samplers import EpochBatches
from oltr_bench.data.transforms import build_pipeline
from oltr_bench.method import LinearHead, MethodModel
from oltr_bench.engine.runner import run_method
from oltr_bench.engine.trainer import Engine
from oltr_bench.models.backbones import build_backbone
from oltr_bench.splits.format import write_split_dir

CLASSES, PER_CLASS, BATCH = 20, 128, 128


def make_split(root: Path):
    rng = np.random.default_rng(0)
    lists = {"train": [], "val": [], "test": []}
    for c in range(CLASSES):
        lists["train"] += [(f"{c}/{i}.png", c) for i in range(PER_CLASS)]
        lists["val"] += [(f"{c}/v{i}.png", c) for i in range(2)]
        lists["test"] += [(f"{c}/t{i}.png", c) for i in range(2)]

    def populate(tmp: Path) -> None:
        for entries in lists.values():
            for path, c in entries:
                (tmp / "img" / path).parent.mkdir(parents=True, exist_ok=True)
                pixels = np.clip(rng.normal(c * 12, 40, (32, 32, 3)), 0, 255).astype(np.uint8)
                Image.fromarray(pixels).save(tmp / "img" / path)

    return write_split_dir(root / "bench", dataset="bench", classes=[str(c) for c in range(CLASSES)], lists=lists,
                           roots={s: "img" for s in lists}, source={"kind": "bench"}, populate=populate)


def overrides(epochs: int, workers: int) -> list[str]:
    return ["model.backbone=glyphnet", "model.input_size=32", "model.feat_dim=128", "data.pipeline=embedded",
            "data.image_size=32", "data.resize=32", f"data.workers={workers}", f"train.batch_size={BATCH}",
            f"train.reference_batch_size={BATCH}", f"train.epochs={epochs}", "train.lr.features=0.05", "train.lr.classifier=0.05"]


def engine_step_times(split, root: Path, epochs: int, workers: int, clock) -> list[float]:
    """Per-step times of the engine's training epochs (the ``_train_epoch`` calls, timed from outside)."""
    times = []
    original = Engine._train_epoch

    def timed(self, net, batches, dataset, optimizers, epoch, epochs_, steps, start_mode):
        start = clock()
        out = original(self, net, batches, dataset, optimizers, epoch, epochs_, steps, start_mode)
        times.append((clock() - start) / steps)
        return out

    Engine._train_epoch = timed
    try:
        run_method("plain", split, runs_root=root, overrides=overrides(epochs, workers), progress=False, echo=lambda m: None)
    finally:
        Engine._train_epoch = original
    return times[1:]


def bare_step_times(split, epochs: int, workers: int, clock) -> list[float]:
    cfg = resolve_config("plain", "bench", {}, overrides(epochs, workers))
    torch.manual_seed(0)
    backbone = build_backbone(cfg["model"])
    model = MethodModel(backbone, LinearHead(backbone.feat_dim, CLASSES)).to(memory_format=torch.channels_last)
    opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9, weight_decay=5e-4)
    dataset = ListDataset(split, "train", build_pipeline(cfg["data"], train=True))
    holder = EpochBatches()
    loader = make_loader(dataset, holder, workers=workers, pin_memory=False, persistent=True)
    rng = np.random.default_rng(0)
    steps = len(dataset) // BATCH
    times = []
    for _ in range(epochs):
        holder.batches = rng.permutation(len(dataset))[: steps * BATCH].reshape(steps, BATCH).tolist()
        model.train()
        start = clock()
        for batch in loader:
            x = batch.x.contiguous(memory_format=torch.channels_last)
            loss = torch.nn.functional.cross_entropy(model(x)["logits"], batch.y)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
        times.append((clock() - start) / steps)
    return times[1:]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--workers", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--wall", action="store_true", help="wall-clock time instead of this process's CPU time")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    clock = time.perf_counter if args.wall else time.process_time
    with tempfile.TemporaryDirectory() as tmp:
        split = make_split(Path(tmp))
        engine, bare = [], []
        for r in range(args.repeats):
            engine += engine_step_times(split, Path(tmp) / f"runs{r}", args.epochs, args.workers, clock)
            bare += bare_step_times(split, args.epochs, args.workers, clock)
            print(f"repeat {r + 1}: engine {statistics.median(engine) * 1e3:.1f} ms/step, bare {statistics.median(bare) * 1e3:.1f} ms/step",
                  file=sys.stderr)
    e, b = statistics.median(engine), statistics.median(bare)
    print(f"batch {BATCH}, {CLASSES * PER_CLASS} images 32x32, glyphnet, {args.workers} workers, torch threads {torch.get_num_threads()}, "
          f"{'wall' if args.wall else 'process CPU'} time")
    print(f"engine: {e * 1e3:.1f} ms/step (median of {len(engine)} epochs)")
    print(f"bare loop: {b * 1e3:.1f} ms/step (median of {len(bare)} epochs)")
    print(f"engine / bare: {e / b:.3f}x (target <= 1.05x): {'PASS' if e / b <= 1.05 else 'FAIL'}")


if __name__ == "__main__":
    main()

"""How hard is the embedded glyph benchmark? Train a small CNN on a *balanced* version of it.

Renders ``--classes`` known classes (as ``make-splits`` would choose them) with ``--train`` images
per class (indices 0..train-1) and ``--test`` images per class (the next indices, so no image is
shared), writes them as PNG files, reads them back the way a loader would, trains a small CNN on
CPU and prints test accuracy next to chance. The benchmark is useful only if this lands clearly
between chance and 100 %: then long-tail and open-set methods have room to differ.

    python bench/embedded_balanced.py            # ~2-3 minutes on 2 cores
"""

from __future__ import annotations

import argparse
import tempfile
import time
from collections import Counter
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from PIL import Image

from oltr_bench.splits import glyphs


def small_cnn(num_classes: int, widths=(32, 64, 128, 256)) -> nn.Module:
    layers, channels = [], 3
    for i, width in enumerate(widths):
        layers += [nn.Conv2d(channels, width, 3, padding=1, bias=False), nn.BatchNorm2d(width), nn.ReLU(inplace=True)]
        if i < len(widths) - 1:
            layers.append(nn.MaxPool2d(2))
        channels = width
    return nn.Sequential(*layers, nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(channels, num_classes))


def load(root: Path, tree: dict[str, list[str]], classes: list[str], indices: range) -> tuple[torch.Tensor, torch.Tensor]:
    images, labels = [], []
    for label, char in enumerate(classes):
        for rel in tree[char][indices.start:indices.stop]:
            with Image.open(root / rel) as img:
                images.append(np.asarray(img.convert("RGB")))
            labels.append(label)
    x = torch.from_numpy(np.stack(images)).permute(0, 3, 1, 2).float().div_(127.5).sub_(1.0)
    return x, torch.tensor(labels)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--classes", type=int, default=120)
    ap.add_argument("--train", type=int, default=100, help="training images per class")
    ap.add_argument("--test", type=int, default=30, help="test images per class")
    ap.add_argument("--epochs", type=int, default=8)
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--lr", type=float, default=0.05)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--workers", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(2)
    torch.manual_seed(args.seed)

    classes, _ = glyphs.choose_classes(args.classes, 20, seed=args.seed)
    per_class = args.train + args.test
    with tempfile.TemporaryDirectory(prefix="oltr-glyphs-") as tmp:
        root = Path(tmp)
        t0 = time.perf_counter()
        tree = glyphs.render_tree(root, {c: per_class for c in classes}, seed=args.seed, workers=args.workers)
        t_render = time.perf_counter() - t0
        x_train, y_train = load(root, tree, classes, range(0, args.train))
        x_test, y_test = load(root, tree, classes, range(args.train, per_class))
        t_load = time.perf_counter() - t0 - t_render
    print(f"rendered {len(classes) * per_class} images in {t_render:.1f} s, read back in {t_load:.1f} s")

    model = small_cnn(len(classes))
    steps_per_epoch = (len(x_train) + args.batch - 1) // args.batch
    opt = torch.optim.SGD(model.parameters(), lr=args.lr, momentum=0.9, weight_decay=5e-4, nesterov=True)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=args.lr, epochs=args.epochs,
                                                steps_per_epoch=steps_per_epoch, pct_start=0.15)
    t0 = time.perf_counter()
    for epoch in range(args.epochs):
        model.train()
        order, total = torch.randperm(len(x_train)), 0.0
        for start in range(0, len(x_train), args.batch):
            idx = order[start:start + args.batch]
            loss = F.cross_entropy(model(x_train[idx]), y_train[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            total += loss.item() * len(idx)
        print(f"epoch {epoch + 1}/{args.epochs}: train loss {total / len(x_train):.3f} "
              f"({time.perf_counter() - t0:.0f} s)", flush=True)
    t_train = time.perf_counter() - t0

    model.eval()
    with torch.no_grad():
        pred = torch.cat([model(x_test[i:i + 512]).argmax(1) for i in range(0, len(x_test), 512)])
    acc = (pred == y_test).float().mean().item()
    chance = 1 / len(classes)
    print(f"\ntest accuracy {acc:.3f}  (chance {chance:.4f}; {len(classes)} classes, "
          f"{args.train} train / {args.test} test per class, {args.epochs} epochs, train {t_train:.0f} s)")
    confusions = Counter((classes[t], classes[p]) for t, p in zip(y_test.tolist(), pred.tolist()) if t != p)
    print("most confused (true -> predicted, count):",
          ", ".join(f"{a}->{b} {n}" for (a, b), n in confusions.most_common(10)))


if __name__ == "__main__":
    main()

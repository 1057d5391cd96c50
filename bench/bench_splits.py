"""Time `make-splits --dataset imagenet` on a synthetic tree with ImageNet's shape (or MS1M-LT).

The tree has the 1000 ILSVRC-2012 wnid folders with 1,281,167 empty train files (732 to 1300 per
class, names like the real ones) and 50,000 empty validation files in per-wnid folders. It is
generated once under bench/_out/ (gitignored; about 1.33 million inodes) and reused. Each repeat
runs the real command in a fresh process (imports, directory scan, sampling, the per-file check
of the ~186K listed images and the atomic write) and records wall time and peak RSS of that
process; the median is printed.

With ``--ms1m`` it times ``make-splits --dataset ms1m`` instead, on a synthetic MS1M-ArcFace
RecordIO with the real counts (85,742 identities, 5,822,653 image records of a few bytes each,
header record 0 and identity records as insightface writes them; about 230 MB under bench/_out/).

    python bench/bench_splits.py --repeats 5
    python bench/bench_splits.py --profile      # one in-process run under cProfile
    python bench/bench_splits.py --ms1m --repeats 3
"""

from __future__ import annotations

import argparse
import cProfile
import os
import pstats
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from oltr_bench.formats.recordio import IRHeader, RecordIOWriter, pack
from oltr_bench.splits.imagenet import wnids

TRAIN_IMAGES, VAL_PER_CLASS = 1_281_167, 50
MS1M_IDENTITIES, MS1M_IMAGES = 85_742, 5_822_653
OUT = Path(__file__).resolve().parent / "_out"


def class_sizes(seed: int = 0) -> list[int]:
    """1000 class sizes between 732 and 1300 summing to ImageNet's 1,281,167 (most classes have 1300)."""
    rng = np.random.default_rng(seed)
    sizes = np.full(1000, 1300)
    deficit = 1300 * 1000 - TRAIN_IMAGES
    while deficit:
        c = int(rng.integers(1000))
        cut = min(deficit, int(rng.integers(1, 1300 - 732 + 1)), int(sizes[c]) - 732)
        sizes[c] -= cut
        deficit -= cut
    return sizes.tolist()


def make_tree(root: Path) -> Path:
    stamp = root / ".complete"
    if stamp.exists():
        return root
    if root.exists():
        shutil.rmtree(root)
    started = time.perf_counter()
    names = wnids()
    rng = np.random.default_rng(1)
    for wnid, n in zip(names, class_sizes()):
        folder = root / "train" / wnid
        folder.mkdir(parents=True)
        # Real file numbers are neither consecutive nor of fixed width.
        for number in rng.choice(40_000, size=n, replace=False):
            os.close(os.open(folder / f"{wnid}_{number + 1}.JPEG", os.O_CREAT | os.O_WRONLY, 0o644))
    order = rng.permutation(len(names) * VAL_PER_CLASS)
    for i, number in enumerate(order):
        folder = root / "val" / names[i // VAL_PER_CLASS]
        folder.mkdir(parents=True, exist_ok=True)
        os.close(os.open(folder / f"ILSVRC2012_val_{number + 1:08d}.JPEG", os.O_CREAT | os.O_WRONLY, 0o644))
    stamp.touch()
    print(f"generated {root} in {time.perf_counter() - started:.0f} s", file=sys.stderr)
    return root


def identity_sizes(seed: int = 0) -> list[int]:
    """85,742 long-tailed identity sizes (a few to about 600) summing to MS1M-ArcFace's 5,822,653 images."""
    rng = np.random.default_rng(seed)
    raw = np.clip(rng.lognormal(np.log(55), 0.6, MS1M_IDENTITIES), 2, 602)
    sizes = np.maximum(2, np.round(raw * MS1M_IMAGES / raw.sum())).astype(int)
    sizes[np.argsort(-sizes)[: abs(MS1M_IMAGES - sizes.sum())]] += np.sign(MS1M_IMAGES - sizes.sum())
    return sizes.tolist()


def make_rec(folder: Path) -> Path:
    stamp = folder / ".complete"
    if stamp.exists():
        return folder
    if folder.exists():
        shutil.rmtree(folder)
    folder.mkdir(parents=True)
    started = time.perf_counter()
    sizes = identity_sizes()
    id_start = MS1M_IMAGES + 1
    with RecordIOWriter(folder / "train.rec", folder / "train.idx") as w:
        w.write(0, pack(IRHeader(2, (float(id_start), float(id_start + len(sizes))), 0, 1), b""))
        key = 1
        for ident, n in enumerate(sizes):
            for _ in range(n):
                w.write(key, pack(IRHeader(0, float(ident), key, 0), b"\xff\xd8\xff\xd9"))
                key += 1
        key = 1
        for ident, n in enumerate(sizes):
            w.write(id_start + ident, pack(IRHeader(2, (float(key), float(key + n)), id_start + ident, 0), b""))
            key += n
    (folder / "property").write_text(f"{len(sizes)},112,112\n")
    stamp.touch()
    print(f"generated {folder} in {time.perf_counter() - started:.0f} s", file=sys.stderr)
    return folder


def run_once(tree: Path, dataset: str = "imagenet") -> tuple[float, float]:
    """(wall seconds, peak RSS in MiB) of one `oltr-bench make-splits --dataset <dataset>` process."""
    with tempfile.TemporaryDirectory(dir=OUT) as out:
        command = [sys.executable, "-m", "oltr_bench", "make-splits", "--dataset", dataset, "--root", str(tree),
                   "--out", out, "--no-progress"]
        started = time.perf_counter()
        proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        _, status, usage = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - started
        stderr = proc.stderr.read().decode()
        proc.stdout.close()
        proc.stderr.close()
        if status != 0:
            raise SystemExit(f"make-splits failed:\n{stderr}")
        return wall, usage.ru_maxrss / 1024  # Linux reports KiB


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--tree", type=Path, default=OUT / "imagenet_tree")
    ap.add_argument("--profile", action="store_true", help="one in-process run under cProfile instead")
    ap.add_argument("--ms1m", action="store_true", help="time MS1M-LT on a synthetic MS1M-ArcFace RecordIO instead")
    args = ap.parse_args()
    OUT.mkdir(exist_ok=True)
    dataset = "ms1m" if args.ms1m else "imagenet"
    tree = make_rec(OUT / "ms1m_rec") if args.ms1m else make_tree(args.tree)
    if args.profile:
        from oltr_bench.registry import DATASETS

        with tempfile.TemporaryDirectory(dir=OUT) as out:
            profiler = cProfile.Profile()
            profiler.enable()
            DATASETS.get(dataset)().make_splits(Path(out), seed=0, overwrite=False, progress=False, root=tree)
            profiler.disable()
        pstats.Stats(profiler).sort_stats("cumulative").print_stats(25)
        return
    runs = [run_once(tree, dataset) for _ in range(args.repeats)]
    for i, (wall, rss) in enumerate(runs, 1):
        print(f"run {i}: {wall:.2f} s, peak RSS {rss:.0f} MiB")
    walls, rss = [w for w, _ in runs], [r for _, r in runs]
    print(f"median {statistics.median(walls):.2f} s (min {min(walls):.2f}, max {max(walls):.2f}); "
          f"peak RSS median {statistics.median(rss):.0f} MiB (max {max(rss):.0f}); load average {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()

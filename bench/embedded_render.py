"""Time rendering an embedded-benchmark-sized glyph tree (~16,000 PNGs), as make-splits would.

120 known classes with a long-tailed train count from 300 down to 3 plus 10 val and 30 test
images each, and 20 open classes with 30 images each. Prints wall time and images/s for the given
worker counts and checks that every worker count wrote byte-identical files.

    python bench/embedded_render.py --workers 2 1
"""

from __future__ import annotations

import argparse
import hashlib
import tempfile
import time
from pathlib import Path

from oltr_bench.splits import glyphs


def plan(seed: int) -> dict[str, int]:
    known, unseen = glyphs.choose_classes(120, 20, seed=seed)
    counts = {c: 3 + round(297 * (1 - i / 119) ** 2.5) + 10 + 30 for i, c in enumerate(known)}
    counts.update({c: 30 for c in unseen})
    return counts


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--workers", type=int, nargs="+", default=[2])
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    work = plan(args.seed)
    total = sum(work.values())
    digests = {}
    for workers in args.workers:
        with tempfile.TemporaryDirectory(prefix="oltr-glyphs-") as tmp:
            t0 = time.perf_counter()
            tree = glyphs.render_tree(Path(tmp), work, seed=args.seed, workers=workers, progress=False)
            seconds = time.perf_counter() - t0
            h = hashlib.sha256()
            for paths in tree.values():
                for rel in paths:
                    h.update((Path(tmp) / rel).read_bytes())
            digests[workers] = h.hexdigest()
        print(f"workers={workers}: {total} images in {seconds:.2f} s ({total / seconds:.0f} images/s), "
              f"sha256 of all files {digests[workers][:16]}")
    print("identical across worker counts:", len(set(digests.values())) == 1)


if __name__ == "__main__":
    main()

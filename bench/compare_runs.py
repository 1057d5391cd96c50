"""Are two sets of runs bit-identical? For refactors that must not change any number.

Usage: python bench/compare_runs.py RUNS_A RUNS_B

RUNS_A and RUNS_B are runs folders (``<runs>/<dataset>/<method>/<run>/``). For every method present
in both (the newest complete run of each), it compares every array of ``predictions/val.npz`` and
``predictions/test.npz`` (dtype, shape and every byte) and the ``metrics`` of ``results.json``
(exact equality), prints one line per method and exits 1 if any differs.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

from oltr_bench.formats.rundir import RunDir


def newest_runs(root: Path) -> dict[tuple[str, str], RunDir]:
    found: dict[tuple[str, str], RunDir] = {}
    for dataset in sorted(p for p in root.iterdir() if p.is_dir()):
        for method in sorted(p for p in dataset.iterdir() if p.is_dir()):
            complete = RunDir.find_completed(root, dataset.name, method.name)
            if complete:
                found[(dataset.name, method.name)] = complete[0]
    return found


def differences(a: RunDir, b: RunDir) -> list[str]:
    out = []
    for which in ("val", "test"):
        with np.load(a.predictions(which)) as x, np.load(b.predictions(which)) as y:
            if sorted(x.files) != sorted(y.files):
                out.append(f"{which}.npz keys {sorted(x.files)} != {sorted(y.files)}")
                continue
            for key in x.files:
                if key == "meta":
                    continue  # names the run (its id), which differs by construction
                u, v = x[key], y[key]
                if u.dtype != v.dtype or u.shape != v.shape or u.tobytes() != v.tobytes():
                    out.append(f"{which}.npz {key} differs")
    ma, mb = (json.loads(r.results_file.read_text())["metrics"] for r in (a, b))
    out += [f"metrics.{k}: {ma.get(k)} != {mb.get(k)}" for k in sorted(set(ma) | set(mb)) if ma.get(k) != mb.get(k)]
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs_a", type=Path)
    parser.add_argument("runs_b", type=Path)
    args = parser.parse_args()
    a, b = newest_runs(args.runs_a), newest_runs(args.runs_b)
    bad = 0
    for key in sorted(set(a) & set(b)):
        diff = differences(a[key], b[key])
        bad += bool(diff)
        metrics = json.loads(a[key].results_file.read_text())["metrics"]
        summary = " ".join(f"{k} {metrics[k]:.4f}" for k in ("many", "medium", "few", "top1", "open_f1", "auroc"))
        print(f"{'/'.join(key):36} {'identical' if not diff else 'DIFFERENT: ' + '; '.join(diff)}  ({summary})")
    for key in sorted(set(a) ^ set(b)):
        print(f"{'/'.join(key):36} only in {'A' if key in a else 'B'}")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())

"""Per-method difference between two profiles (issue 14): each method's metrics, mean over seeds,
in two suite folders, and fast − faithful.

    oltr-bench suite --methods paper --seeds 3 --jobs 2 --profile faithful --out A
    oltr-bench suite --methods paper --seeds 3 --jobs 2 --profile fast --out B
    python bench/profile_diff.py A B

Prints two Markdown tables:

1. each profile's mean ± sample std over seeds, and the difference of the means;
2. the paired difference: B − A of the same seed, mean ± sample std over the seeds both folders
   hold, next to the seed-to-seed spread of A (its std). A profile difference whose mean is not
   larger than that spread cannot be told from changing the seed.

On the CPU a run's numbers depend on torch's thread count (``--jobs`` sets cores / jobs), so both
folders must have been run with the same ``--jobs``: the script prints the thread counts the
manifests record and stops when the two folders' counts differ.
"""

from __future__ import annotations

import statistics
import sys
from pathlib import Path

from oltr_bench.report.collect import collect
from oltr_bench.report.rows import Row, build_rows, run_seed
from oltr_bench.suite.plan import PAPER_METHODS

KEYS = ("open_f1", "top1", "many", "medium", "few", "auroc")


def rows_by_method(folder: Path) -> dict[str, Row]:
    rows = [r for r in build_rows(collect([folder / "runs"])) if r.kind == "run"]
    return {r.method: r for r in rows}


def threads(rows: dict[str, Row]) -> set[object]:
    """The CPU thread counts the runs' manifests record (None: not recorded, runs before 9334765)."""
    return {((run.manifest or {}).get("device") or {}).get("cpu_threads") for row in rows.values() for run in row.runs}


def per_seed(row: Row, key: str) -> dict[int, float]:
    """The metric of each seed (runs that repeat a seed averaged, as the report does)."""
    values: dict[int, list[float]] = {}
    for run in row.runs:
        seed, value = run_seed(run), (run.results.get("metrics") or {}).get(key)
        if seed is not None and value is not None:
            values.setdefault(seed, []).append(value)
    return {seed: statistics.fmean(v) for seed, v in values.items()}


def cell(row: Row, key: str) -> str:
    value, std = row.metrics.get(key), row.std.get(key)
    if value is None:
        return "–"
    return f"{value:.3f}" + (f" ± {std:.3f}" if std is not None else "")


def mean_std(values: list[float], signed: bool) -> str:
    if not values:
        return "–"
    text = f"{statistics.fmean(values):+.3f}" if signed else f"{statistics.fmean(values):.3f}"
    return text + (f" ± {statistics.stdev(values):.3f}" if len(values) > 1 else "")


def main() -> None:
    if len(sys.argv) != 3:
        sys.exit("usage: python bench/profile_diff.py FOLDER_A FOLDER_B   (two `oltr-bench suite --out` folders)")
    a, b = Path(sys.argv[1]), Path(sys.argv[2])
    ra, rb = rows_by_method(a), rows_by_method(b)
    ta, tb = threads(ra), threads(rb)
    print(f"CPU threads recorded: {a}: {sorted(ta, key=str)}, {b}: {sorted(tb, key=str)}\n")
    known_a, known_b = ta - {None}, tb - {None}
    if known_a and known_b and known_a != known_b:
        sys.exit("the two folders were run with different thread counts (different --jobs): their numbers differ "
                 "for that reason alone; run both with the same --jobs")
    methods = [m for m in PAPER_METHODS if m in ra and m in rb]

    print("| method | seeds | profile | " + " | ".join(KEYS) + " |")
    print("|---|---|---|" + "---|" * len(KEYS))
    for method in methods:
        x, y = ra[method], rb[method]
        print(f"| {method} | {x.n_seeds}/{y.n_seeds} | {x.profile} | " + " | ".join(cell(x, k) for k in KEYS) + " |")
        print(f"| | | {y.profile} | " + " | ".join(cell(y, k) for k in KEYS) + " |")
        diffs = []
        for k in KEYS:
            u, v = x.metrics.get(k), y.metrics.get(k)
            diffs.append("–" if u is None or v is None else f"{v - u:+.3f}")
        print(f"| | | {y.profile} − {x.profile} | " + " | ".join(diffs) + " |")

    print("\nPaired by seed: B − A of the same seed, mean ± std over the common seeds; "
          "below it, A's seed-to-seed std.\n")
    print("| method | common seeds | | " + " | ".join(KEYS) + " |")
    print("|---|---|---|" + "---|" * len(KEYS))
    for method in methods:
        x, y = ra[method], rb[method]
        paired, spread, common = [], [], set()
        for k in KEYS:
            sx, sy = per_seed(x, k), per_seed(y, k)
            seeds = sorted(set(sx) & set(sy))
            common |= set(seeds)
            paired.append(mean_std([sy[s] - sx[s] for s in seeds], signed=True))
            spread.append(f"{statistics.stdev(sx.values()):.3f}" if len(sx) > 1 else "–")
        print(f"| {method} | {','.join(map(str, sorted(common)))} | {y.profile} − {x.profile} | " + " | ".join(paired) + " |")
        print(f"| | | {x.profile} seed std | " + " | ".join(spread) + " |")


if __name__ == "__main__":
    main()

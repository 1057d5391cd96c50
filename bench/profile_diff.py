"""Per-method difference between two profiles (issue 14): each method's metrics, mean over seeds,
in two suite folders, and fast − faithful.

    oltr-bench suite --methods paper --seeds 3 --profile faithful --out A
    oltr-bench suite --methods paper --seeds 3 --profile fast --out B
    python bench/profile_diff.py A B

Prints a Markdown table (mean ± std over seeds for each profile and the difference of the means).
"""

from __future__ import annotations

import sys
from pathlib import Path

from oltr_bench.report.collect import collect
from oltr_bench.report.rows import build_rows
from oltr_bench.suite.plan import PAPER_METHODS

KEYS = ("open_f1", "top1", "many", "medium", "few", "auroc")


def rows_by_method(folder: Path) -> dict[str, object]:
    rows = [r for r in build_rows(collect([folder / "runs"])) if r.kind == "run"]
    return {r.method: r for r in rows}


def cell(row, key: str) -> str:
    value, std = row.metrics.get(key), row.std.get(key)
    if value is None:
        return "–"
    return f"{value:.3f}" + (f" ± {std:.3f}" if std is not None else "")


def main() -> None:
    a, b = Path(sys.argv[1]), Path(sys.argv[2])
    ra, rb = rows_by_method(a), rows_by_method(b)
    print("| method | seeds | profile | " + " | ".join(KEYS) + " |")
    print("|---|---|---|" + "---|" * len(KEYS))
    for method in PAPER_METHODS:
        if method not in ra or method not in rb:
            continue
        x, y = ra[method], rb[method]
        print(f"| {method} | {x.n_seeds}/{y.n_seeds} | {x.profile} | " + " | ".join(cell(x, k) for k in KEYS) + " |")
        print(f"| | | {y.profile} | " + " | ".join(cell(y, k) for k in KEYS) + " |")
        diffs = []
        for k in KEYS:
            u, v = x.metrics.get(k), y.metrics.get(k)
            diffs.append("–" if u is None or v is None else f"{v - u:+.3f}")
        print(f"| | | {y.profile} − {x.profile} | " + " | ".join(diffs) + " |")


if __name__ == "__main__":
    main()

"""Runs and leaderboard entries as one pandas DataFrame: ``oltr_bench.load_results(paths)``.

One row per run (each ``results.json``, every seed on its own row) or per entry, with the
columns of :data:`DESCRIPTION` (what was run and how it was measured), :data:`PROVENANCE` (where
the numbers come from) and one column per metric key of SPEC.md §3 (fractions; NaN where a row
has none). These are the records the report's tables are made of: a table row is the rows of one
``config`` (same dataset, protocol, threshold, evaluation set and config apart from ``seed``)
averaged over their seeds, which ``frame.groupby(...)`` reproduces.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterable

from oltr_bench.metrics.keys import METRIC_KEYS
from oltr_bench.paths import runs_root
from oltr_bench.report.collect import Collected, RunRecord, collect, leaderboard_dirs
from oltr_bench.report.rows import config_key, entry_row, run_description, run_seed

if TYPE_CHECKING:
    import pandas as pd

DESCRIPTION = ("kind", "dataset", "protocol", "evaluation_set", "open_threshold", "name", "method", "source", "backbone",
               "pretraining", "extra_data", "epochs", "seed", "partial", "config")
PROVENANCE = ("run_id", "config_hash", "git_sha", "split_fingerprint", "oltr_bench", "paper_title", "paper_venue",
              "paper_year", "paper_url", "code_url", "path")
COLUMNS = (*DESCRIPTION, *PROVENANCE, *METRIC_KEYS, "other_metrics")


def _run_record(run: RunRecord) -> dict[str, Any]:
    res, manifest = run.results, run.manifest or {}
    return {
        "kind": "run", "dataset": res.get("dataset"), "protocol": res.get("protocol", "oltr"),
        "evaluation_set": res.get("evaluation_set", "test"), "open_threshold": res.get("open_threshold"),
        "name": res.get("method"), "method": res.get("method"), "source": "reproduced", **run_description(run),
        "seed": run_seed(run), "partial": bool(res.get("partial")), "config": config_key(run) or None,
        "run_id": run.run_dir.name if run.run_dir else None, "config_hash": manifest.get("config_hash"),
        "git_sha": manifest.get("git_sha"), "split_fingerprint": res.get("split_fingerprint"),
        "oltr_bench": (manifest.get("versions") or {}).get("oltr_bench"), "path": str(run.path),
        **{key: (res.get("metrics") or {}).get(key) for key in METRIC_KEYS},
    }


def records(collected: Collected) -> list[dict[str, Any]]:
    """One flat dict per run and per entry, with the keys of :data:`COLUMNS`."""
    out = [_run_record(run) for run in collected.runs]
    for entry in collected.entries:
        row, data = entry_row(entry), entry.data
        paper = row.paper
        out.append({
            "kind": "entry", "dataset": row.dataset, "protocol": row.protocol, "evaluation_set": row.evaluation_set,
            "open_threshold": row.open_threshold, "name": row.name, "method": row.method, "source": row.source,
            "backbone": row.backbone, "pretraining": row.pretraining, "extra_data": row.extra_data, "epochs": row.epochs,
            "seed": None, "partial": False, "config": None, "run_id": None, "config_hash": None, "git_sha": None,
            "split_fingerprint": (data.get("verification") or {}).get("split_fingerprint"), "oltr_bench": None,
            "paper_title": paper.get("title"), "paper_venue": paper.get("venue"), "paper_year": paper.get("year"),
            "paper_url": paper.get("url"), "code_url": row.code_url, "path": str(entry.path),
            **{key: row.metrics.get(key) for key in METRIC_KEYS}, "other_metrics": row.other_metrics or None,
        })
    return [{column: record.get(column) for column in COLUMNS} for record in out]


def load_results(paths: str | os.PathLike | Iterable[str | os.PathLike] | None = None, *,
                 leaderboard: bool = False) -> "pd.DataFrame":
    """A DataFrame of the runs and entries under ``paths`` (run directories, results files, entry
    files or folders of them; default: the work folder's runs), one row per run or entry.

    ``leaderboard=True`` adds the shipped entries and the user's own (``oltr_work/leaderboard``),
    as ``oltr-bench report`` does. Metric columns hold fractions, NaN where missing;
    ``open_threshold`` is None where the method rejects on its own and ``"unknown"`` where a
    published number does not say.
    """
    import pandas as pd

    if paths is None:
        paths = [runs_root()]
    elif isinstance(paths, (str, os.PathLike)):
        paths = [paths]
    collected = collect([Path(p) for p in paths], leaderboard_dirs=leaderboard_dirs() if leaderboard else [])
    frame = pd.DataFrame(records(collected), columns=list(COLUMNS))
    frame[list(METRIC_KEYS)] = frame[list(METRIC_KEYS)].astype(float)
    for column in ("seed", "epochs", "paper_year"):  # integers with gaps
        frame[column] = frame[column].astype("Int64")
    return frame

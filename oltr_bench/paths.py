"""Default locations: everything oltr-bench writes goes under one work folder.

The work folder is ``$OLTR_BENCH_HOME`` if set, else ``./oltr_work``: splits in ``splits/``,
runs in ``runs/``, reports in ``report/``.
"""

from __future__ import annotations

import os
from pathlib import Path


def work_dir() -> Path:
    return Path(os.environ.get("OLTR_BENCH_HOME", "oltr_work"))


def splits_root() -> Path:
    return work_dir() / "splits"


def runs_root() -> Path:
    return work_dir() / "runs"


def report_dir() -> Path:
    return work_dir() / "report"

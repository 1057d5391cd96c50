"""Default locations: everything oltr-bench writes goes under one work folder.

The work folder is ``$OLTR_BENCH_HOME`` if set, else ``./oltr_work``: splits in ``splits/``,
runs in ``runs/``, reports in ``report/``.
"""

from __future__ import annotations

import os
from pathlib import Path


DEFAULT_WORK_DIR = "oltr_work"


def work_dir() -> Path:
    return Path(os.environ.get("OLTR_BENCH_HOME", DEFAULT_WORK_DIR))


def splits_root() -> Path:
    return work_dir() / "splits"


def runs_root() -> Path:
    return work_dir() / "runs"


def report_dir() -> Path:
    return work_dir() / "report"


def work_dir_hint(path: str | os.PathLike) -> str:
    """For a path that does not exist: when it names the default work folder (``oltr_work/...``)
    while ``$OLTR_BENCH_HOME`` puts the work folder elsewhere and the same path exists there, a
    sentence saying so (else "")."""
    parts = Path(path).parts
    if not parts or parts[0] != DEFAULT_WORK_DIR or work_dir() == Path(DEFAULT_WORK_DIR):
        return ""
    moved = work_dir().joinpath(*parts[1:])
    if not moved.exists():
        return ""
    return f"; $OLTR_BENCH_HOME puts the work folder at {work_dir()}, where {moved} exists"

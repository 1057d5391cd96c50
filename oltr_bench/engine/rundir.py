"""Run directories: layout, manifest and lookup of earlier runs.

``<runs>/<dataset>/<method>/<YYYYmmdd-HHMMSS>-<config hash>/`` holds ``config.yaml`` (the resolved
config), ``manifest.json`` (provenance and status), ``train_log.jsonl``, ``checkpoints/``,
``predictions/{val,test}.npz`` and, written last, ``results.json``. The manifest's ``status`` is
``running`` until the run completes; a crashed run keeps ``running``/``failed`` and has no
``results.json``.
"""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from oltr_bench import __version__
from oltr_bench.utils.io import atomic_write_json

RUN_FORMAT = "oltr-bench-run/1"


def new_run_dir(runs_root: Path, dataset: str, method: str, config_hash: str) -> Path:
    base = runs_root / dataset / method
    stamp = time.strftime("%Y%m%d-%H%M%S")
    path = base / f"{stamp}-{config_hash[:8]}"
    n = 1
    while path.exists():
        n += 1
        path = base / f"{stamp}-{config_hash[:8]}-{n}"
    path.mkdir(parents=True)
    return path


def git_sha() -> str | None:
    """The git commit of the oltr-bench source tree, if it is a git checkout."""
    here = Path(__file__).resolve().parent
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=here, capture_output=True, text=True, timeout=5, check=True
        ).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain"], cwd=here, capture_output=True, text=True, timeout=5).stdout.strip()
        return out + ("-dirty" if dirty else "")
    except (OSError, subprocess.SubprocessError):
        return None


def package_versions() -> dict[str, str]:
    import numpy
    import torch
    import torchvision

    return {
        "oltr_bench": __version__,
        "python": sys.version.split()[0],
        "torch": torch.__version__,
        "torchvision": torchvision.__version__,
        "numpy": numpy.__version__,
        "platform": platform.platform(),
    }


def write_manifest(run_dir: Path, manifest: dict[str, Any]) -> None:
    atomic_write_json(run_dir / "manifest.json", manifest)


def read_manifest(run_dir: Path) -> dict[str, Any] | None:
    try:
        return json.loads((run_dir / "manifest.json").read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        return None


def find_completed_runs(runs_root: Path, dataset: str, method: str, **match: Any) -> list[Path]:
    """Completed runs of ``method`` on ``dataset`` whose manifest matches ``match`` (newest first)."""
    base = runs_root / dataset / method
    if not base.is_dir():
        return []
    found = []
    for run_dir in base.iterdir():
        manifest = read_manifest(run_dir)
        if not manifest or manifest.get("status") != "complete" or not (run_dir / "results.json").is_file():
            continue
        if all(manifest.get(k) == v for k, v in match.items()):
            found.append(run_dir)
    return sorted(found, key=lambda p: os.path.getmtime(p / "results.json"), reverse=True)

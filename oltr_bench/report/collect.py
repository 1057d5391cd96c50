"""Find and load results: run directories, ``results.json`` files, and folders containing them."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Iterable

from oltr_bench.errors import OltrError


def find_results_files(paths: Iterable[Path]) -> list[Path]:
    """Every ``results.json`` named directly, inside a run directory, or anywhere below a folder."""
    found: list[Path] = []
    for path in paths:
        path = Path(path)
        if path.is_file():
            found.append(path)
        elif path.is_dir():
            found += sorted(path.rglob("results.json"))
        else:
            raise OltrError(f"{path} does not exist; expected a run directory, a results.json file or a folder of runs")
    return found


def load_results(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise OltrError(f"{path} is not a readable results file: {exc}") from None
    if not str(data.get("format", "")).startswith("oltr-bench-results/"):
        raise OltrError(f"{path}: format {data.get('format')!r} is not an oltr-bench results file")
    data["_path"] = str(path)
    return data

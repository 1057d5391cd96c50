"""``results.json`` (SPEC.md §3): the metrics of one evaluation, written by ``run`` and ``evaluate``."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from oltr_bench import formats
from oltr_bench.errors import OltrError
from oltr_bench.formats.jsonio import read_json
from oltr_bench.utils.io import atomic_write_json

REQUIRED = ("dataset", "metrics")


def load_results(path: str | os.PathLike) -> dict[str, Any]:
    """A results file, checked to be one (its ``format``, ``dataset`` and ``metrics``); ``_path`` names it."""
    data = read_json(Path(path), "a results.json (SPEC.md §3)")
    if not formats.is_format(data.get("format"), formats.RESULTS):
        raise OltrError(f"{path}: format {data.get('format')!r} is not an oltr-bench results file")
    for key in REQUIRED:
        if key not in data:
            raise OltrError(f"{path}: key {key!r} is missing; expected an oltr-bench results file (SPEC.md §3)")
    data["_path"] = str(path)
    return data


def write_results(path: str | os.PathLike, results: dict[str, Any]) -> None:
    """Write ``results.json`` atomically (a reader never sees a partial file)."""
    atomic_write_json(path, results)

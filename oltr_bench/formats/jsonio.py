"""The checked JSON reader: every JSON file oltr-bench reads goes through :func:`read_json`."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from oltr_bench.errors import OltrError


def read_json(path: str | Path, expected: str) -> dict[str, Any]:
    """The JSON object in ``path``; ``expected`` (e.g. "a results.json") completes the error message.

    A file that cannot be read, is not JSON, or holds anything but an object is an
    :class:`~oltr_bench.errors.OltrError` that names the file and what was expected.
    """
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as exc:
        raise OltrError(f"{path}: cannot read the file ({exc}); expected {expected}") from None
    except json.JSONDecodeError as exc:
        raise OltrError(f"{path}: not valid JSON ({exc}); expected {expected}") from None
    if not isinstance(data, dict):
        raise OltrError(f"{path}: found a JSON {type(data).__name__}, expected {expected} (a JSON object)")
    return data


def file_format(path: str | Path) -> str:
    """The ``format`` string of a JSON file ('' if it is not a readable JSON object)."""
    try:
        data = read_json(path, "a JSON object")
    except OltrError:
        return ""
    value = data.get("format", "")
    return value if isinstance(value, str) else ""

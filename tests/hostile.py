"""Helpers of the hostile-input suite (tests/attacks): build bad files, and check how they are refused."""

from __future__ import annotations

import io
import json
import zipfile
from pathlib import Path

import numpy as np


def refused(result, *needles: str) -> str:
    """The CLI refused: exit status 2, no traceback, one message (``Error: ...``) that holds every needle."""
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output
    message = result.output[result.output.index("Error: "):]
    for needle in needles:
        assert needle in message, (needle, message)
    return message


def files_under(root: Path) -> set[Path]:
    return {p for p in Path(root).rglob("*") if p.is_file()}


def temporaries(root: Path) -> list[Path]:
    """Left-over temporary files or folders of the atomic writers."""
    return [p for p in Path(root).rglob(".*") if p.name.endswith((".tmp", ".partial")) or ".tmp" in p.name]


def npy_bytes(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.lib.format.write_array(buffer, array, allow_pickle=False)
    return buffer.getvalue()


def npz(path: Path, members: dict[str, bytes], compression: int = zipfile.ZIP_STORED) -> Path:
    """An archive of raw members (``name`` -> bytes of ``name.npy``), lies included."""
    with zipfile.ZipFile(path, "w", compression) as zf:
        for name, data in members.items():
            zf.writestr(f"{name}.npy", data)
    return path


def header_only(shape: tuple[int, ...], dtype: str = "<f4") -> bytes:
    """A .npy header that declares ``shape`` with no data after it."""
    buffer = io.BytesIO()
    np.lib.format.write_array_header_1_0(buffer, {"descr": dtype, "fortran_order": False, "shape": shape})
    return buffer.getvalue()


def deep_json(depth: int) -> str:
    return "[" * depth + "]" * depth


JSON_ATTACKS = {
    "deeply nested": lambda valid: deep_json(100_000).encode(),
    "not UTF-8": lambda valid: b'{"format": "\xff\xfe"}',
    "a list, not an object": lambda valid: json.dumps([valid]).encode(),
    "NaN": lambda valid: json.dumps(valid).replace("{", '{"nan_value": NaN, ', 1).encode(),
    "a key twice": lambda valid: json.dumps(valid).replace("{", '{"format": "x", ', 1).encode(),
}
"""Bytes that no JSON reader may accept, built from a valid document."""
JSON_MESSAGES = {
    "deeply nested": "nested deeper than",
    "not UTF-8": "not UTF-8 text",
    "a list, not an object": "found a JSON list",
    "NaN": "NaN is not a JSON value",
    "a key twice": "appears twice in one object",
}

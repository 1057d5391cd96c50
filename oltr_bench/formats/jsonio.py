"""The checked JSON reader: every JSON file oltr-bench reads goes through :func:`read_json`
(and YAML from others' runs through :func:`loads_yaml`).

Files come from strangers (entries, results, manifests of shared runs and splits), so a reader
refuses, with one message naming the file: a file larger than its budget (before reading it),
bytes that are not UTF-8, invalid JSON, ``NaN``/``Infinity`` (not JSON), duplicate keys (which
value counts would be ambiguous), nesting deeper than :data:`MAX_DEPTH`, and a top level that is
not an object. :func:`bad` and the ``expect_*`` helpers give the schema checks of each format
one message style: ``<file>: <key>: found <value>, expected <what>``.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import yaml

from oltr_bench.errors import OltrError

MAX_BYTES = 64 * 2**20  # far above any file oltr-bench writes (a 1000-class results.json is ~0.2 MB)
MAX_DEPTH = 32  # our formats nest at most 5 levels


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON value")


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key in out:
            raise ValueError(f"key {key!r} appears twice in one object")
        out[key] = value
    return out


def _depth(value: Any) -> int:
    deepest, stack = 0, [(value, 1)]
    while stack:
        node, depth = stack.pop()
        deepest = max(deepest, depth)
        if depth > MAX_DEPTH:
            break
        children = node.values() if isinstance(node, dict) else node if isinstance(node, list) else ()
        stack.extend((child, depth + 1) for child in children if isinstance(child, (dict, list)))
    return deepest


def loads(data: bytes | str, where: str, expected: str) -> Any:
    """Parse JSON text from ``where`` with the rules of the module docstring (any top-level value)."""
    if isinstance(data, bytes):
        try:
            data = data.decode("utf-8-sig")  # a UTF-8 byte-order mark is tolerated
        except UnicodeDecodeError as exc:
            raise OltrError(f"{where}: not UTF-8 text (byte {exc.start}); expected {expected}") from None
    try:
        value = json.loads(data, parse_constant=_no_constant, object_pairs_hook=_no_duplicates)
    except RecursionError:
        raise OltrError(f"{where}: nested deeper than {MAX_DEPTH} levels; expected {expected}") from None
    except ValueError as exc:  # json.JSONDecodeError included
        raise OltrError(f"{where}: not valid JSON ({exc}); expected {expected}") from None
    if _depth(value) > MAX_DEPTH:
        raise OltrError(f"{where}: nested deeper than {MAX_DEPTH} levels; expected {expected}")
    return value


def read_json(path: str | Path, expected: str, max_bytes: int = MAX_BYTES) -> dict[str, Any]:
    """The JSON object in ``path``; ``expected`` (e.g. "a results.json") completes the error message."""
    path = Path(path)
    try:
        size = path.stat().st_size
        if size > max_bytes:
            raise OltrError(f"{path}: {size:,} bytes, more than the {max_bytes:,} allowed; expected {expected}")
        data = path.read_bytes()
    except OSError as exc:
        raise OltrError(f"{path}: cannot read the file ({exc.strerror or exc}); expected {expected}") from None
    value = loads(data, str(path), expected)
    if not isinstance(value, dict):
        raise OltrError(f"{path}: found a JSON {type(value).__name__}, expected {expected} (a JSON object)")
    return value


def file_format(path: str | Path) -> str:
    """The ``format`` string of a JSON file ('' if it is not a readable JSON object)."""
    try:
        data = read_json(path, "a JSON object")
    except OltrError:
        return ""
    value = data.get("format", "")
    return value if isinstance(value, str) else ""


# -- schema checks: one message style for every format -----------------------------------------

def describe(value: Any, limit: int = 60) -> str:
    """A short JSON rendering of ``value`` for messages."""
    try:
        text = json.dumps(value, ensure_ascii=False, default=str)
    except (ValueError, RecursionError):
        text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def bad(where: str, key: str, value: Any, expected: str) -> OltrError:
    return OltrError(f"{where}: {key}: found {describe(value)}, expected {expected}")


def is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def expect(data: dict[str, Any], key: str, where: str, check: Any, expected: str, *, required: bool = True,
           prefix: str = "") -> Any:
    """``data[key]`` if ``check(value)`` holds (absent and not required: None); else the one-line error."""
    if key not in data:
        if required:
            raise OltrError(f"{where}: {prefix}{key}: missing, expected {expected}")
        return None
    value = data[key]
    if not check(value):
        raise bad(where, prefix + key, value, expected)
    return value


# -- YAML (config files of runs others made) ----------------------------------------------------

class _NoAliasLoader(yaml.SafeLoader):
    """PyYAML's safe loader without anchors and aliases: a few lines of aliases can expand to
    gigabytes (the "billion laughs"), and our config files never use them."""

    def compose_node(self, parent, index):  # noqa: D102 - PyYAML's hook
        if self.check_event(yaml.AliasEvent):
            event = self.peek_event()
            raise yaml.composer.ComposerError(None, None, "aliases (*name) are not accepted", event.start_mark)
        return super().compose_node(parent, index)


def loads_yaml(text: str, where: str, expected: str, max_bytes: int = 2**20) -> Any:
    """Parse YAML from ``where`` safely: at most ``max_bytes``, no aliases, no Python tags."""
    if len(text.encode("utf-8", "surrogatepass")) > max_bytes:
        raise OltrError(f"{where}: more than {max_bytes:,} bytes; expected {expected}")
    try:
        return yaml.load(text, Loader=_NoAliasLoader)  # noqa: S506 - a SafeLoader subclass
    except RecursionError:
        raise OltrError(f"{where}: nested too deeply; expected {expected}") from None
    except yaml.YAMLError as exc:
        raise OltrError(f"{where} is not valid YAML ({str(exc).strip().splitlines()[0]}); expected {expected}") from None

"""``results.json`` (SPEC.md §3): the metrics of one evaluation, written by ``run`` and ``evaluate``;
``face_results.json`` (SPEC.md §6): a face identification evaluation, written by ``evaluate-faces``."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Callable

from oltr_bench import formats
from oltr_bench.errors import OltrError
from oltr_bench.formats.jsonio import expect, is_int, is_number, read_json
from oltr_bench.protocols import PROTOCOLS
from oltr_bench.utils.io import atomic_write_json

def _fraction_or_null(value: Any) -> bool:
    return value is None or (is_number(value) and 0 <= value <= 1)


def _metrics(value: Any) -> bool:
    return isinstance(value, dict) and all(_fraction_or_null(v) for v in value.values())


# key -> (required, check, expected): what the report and the leaderboard read from a results file
FIELDS: dict[str, tuple[bool, Callable[[Any], bool], str]] = {
    "dataset": (True, lambda v: isinstance(v, str) and v.strip() != "", "the dataset's name"),
    "metrics": (True, _metrics, "an object of SPEC.md §3 metrics, each a fraction in [0, 1] or null"),
    "method": (False, lambda v: v is None or isinstance(v, str), "the method's name or null"),
    "protocol": (False, lambda v: isinstance(v, str) and v in PROTOCOLS, f"one of {', '.join(PROTOCOLS)}"),
    "open_threshold": (False, lambda v: v is None or is_number(v), "a finite threshold or null"),
    "evaluation_set": (False, lambda v: v in ("test", "val"), "test or val"),
    "split_fingerprint": (False, lambda v: isinstance(v, str), "the split's fingerprint"),
    "partial": (False, lambda v: isinstance(v, bool), "true or false"),
    "per_class_acc": (False, lambda v: isinstance(v, list) and all(_fraction_or_null(a) for a in v), "a list of fractions or nulls"),
    "train_counts": (False, lambda v: isinstance(v, list) and all(is_int(c) and c >= 0 for c in v), "a list of class counts"),
    "val_metrics": (False, _metrics, "an object of SPEC.md §3 metrics"),
    "groups": (False, lambda v: isinstance(v, dict), "an object"),
    "counts": (False, lambda v: isinstance(v, dict), "an object"),
    "curves": (False, lambda v: isinstance(v, dict), "an object of curves"),
    "provenance": (False, lambda v: isinstance(v, dict), "an object"),
}


def load_results(path: str | os.PathLike) -> dict[str, Any]:
    """A results file, checked to be one: its ``format`` and the kinds of the keys readers use
    (each problem names the file and key); ``_path`` names it."""
    return _load_checked(path, "a results.json (SPEC.md §3)", formats.RESULTS, "results file", FIELDS)


def _load_checked(path: str | os.PathLike, what: str, format_id: str, name: str,
                  fields: dict[str, tuple[bool, Callable[[Any], bool], str]]) -> dict[str, Any]:
    """``path`` read as checked JSON, its ``format`` ``format_id`` and each of ``fields`` of its kind."""
    data = read_json(Path(path), what)
    if not formats.is_format(data.get("format"), format_id):
        raise OltrError(f"{path}: format {data.get('format')!r} is not an oltr-bench {name}")
    for key, (required, check, expected) in fields.items():
        expect(data, key, str(path), check, expected, required=required)
    data["_path"] = str(path)
    return data


def write_results(path: str | os.PathLike, results: dict[str, Any]) -> None:
    """Write ``results.json`` atomically (a reader never sees a partial file)."""
    atomic_write_json(path, results)


def _face_metrics(value: Any) -> bool:
    if not isinstance(value, dict):
        return False
    for key, v in value.items():
        if key == "cmc":
            if not (isinstance(v, list) and all(_fraction_or_null(c) for c in v)):
                return False
        elif key == "tar_at_far":
            if not _metrics(v):
                return False
        elif not _fraction_or_null(v):
            return False
    return True


FACE_FIELDS: dict[str, tuple[bool, Callable[[Any], bool], str]] = {
    "dataset": FIELDS["dataset"],
    "metrics": (True, _face_metrics, "an object of SPEC.md §6 metrics (fractions in [0, 1] or null; cmc a list, tar_at_far an object)"),
    "method": FIELDS["method"],
    "protocol": (False, lambda v: v is None or isinstance(v, str), "the face protocol's name (heldout, megaface, embedded) or null"),
    "distractors": (True, lambda v: is_int(v) and v >= 0, "the number of distractors used"),
    "groups": FIELDS["groups"],
    "counts": FIELDS["counts"],
    "provenance": FIELDS["provenance"],
}


def load_face_results(path: str | os.PathLike) -> dict[str, Any]:
    """A ``face_results.json``, checked like :func:`load_results`; ``_path`` names it."""
    return _load_checked(path, "a face_results.json (SPEC.md §6)", formats.FACE_RESULTS, "face results file", FACE_FIELDS)

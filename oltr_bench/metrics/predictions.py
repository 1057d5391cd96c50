"""Predictions files (SPEC.md §2): one ``.npz`` per evaluation set, validated before scoring.

Keys: ``ids`` (str [N]), ``logits`` or ``probs`` (float [N, C]), optional ``pred`` (int [N],
-1 = rejected), optional ``known_score`` (float [N]), ``split_fingerprint`` (str scalar),
optional ``meta`` (JSON object as a str scalar). Files are loaded with ``allow_pickle=False``.

:func:`load_predictions` reads a file (its keys and their kinds); :func:`align` validates the
arrays against a split — the checks apply as well to predictions made in memory by the engine —
and says which row holds each id of the split. Every message names the key, what was found and
what was expected.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from oltr_bench.errors import OltrError
from oltr_bench.formats import npz
from oltr_bench.formats.jsonio import loads
from oltr_bench.splits.format import SplitDir
from oltr_bench.utils.io import atomic_open

MAX_BYTES = 16 * 2**30  # the most an evaluation allocates for one file (ImageNet-LT's test + open in float64: 0.5 GB)
REQUIRED_KEYS = ("ids", "split_fingerprint")
OPTIONAL_KEYS = ("logits", "probs", "pred", "known_score", "meta")
PROBS_TOLERANCE = 1e-3  # |Σ_c p_c − 1| allowed per row (float16 probabilities of 1000 classes stay within it)


@dataclass
class Predictions:
    ids: np.ndarray
    scores: np.ndarray  # logits or probs, [N, C]
    scores_are_probs: bool
    split_fingerprint: str
    pred: np.ndarray | None = None
    known_score: np.ndarray | None = None
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def scores_key(self) -> str:
        return "probs" if self.scores_are_probs else "logits"


def write_predictions(
    path: str | os.PathLike,
    *,
    ids,
    split_fingerprint: str,
    logits=None,
    probs=None,
    pred=None,
    known_score=None,
    meta: dict[str, Any] | None = None,
) -> None:
    """Write a predictions file atomically (exactly one of ``logits``/``probs``).

    Float64 scores stay float64; other scores are stored as float32.
    """
    if (logits is None) == (probs is None):
        raise ValueError("give exactly one of logits or probs")

    def floats(values) -> np.ndarray:
        values = np.asarray(values)
        return values if values.dtype == np.float64 else values.astype(np.float32, copy=False)

    arrays: dict[str, np.ndarray] = {
        "ids": np.asarray(ids, dtype=np.str_),
        "split_fingerprint": np.asarray(split_fingerprint, dtype=np.str_),
    }
    arrays["logits" if logits is not None else "probs"] = floats(logits if logits is not None else probs)
    if pred is not None:
        arrays["pred"] = np.asarray(pred, dtype=np.int64)
    if known_score is not None:
        arrays["known_score"] = floats(known_score)
    if meta is not None:
        arrays["meta"] = np.asarray(json.dumps(meta, sort_keys=True), dtype=np.str_)
    with atomic_open(path) as fh:  # streamed: the archive is never held in memory
        np.savez(fh, **arrays)


def _describe(array: np.ndarray) -> str:
    return f"dtype {array.dtype} with shape {array.shape}"


def _string_scalar(arrays: dict[str, np.ndarray], key: str) -> str:
    value = arrays[key]
    if value.ndim != 0 or value.dtype.kind != "U":
        raise OltrError(f"{key}: found {_describe(value)}; expected a string scalar (np.asarray(text, dtype=str))")
    return str(value)


def load_predictions(path: str | os.PathLike, split: SplitDir | None = None, which: str = "test", partial: bool = False,
                     max_bytes: int = MAX_BYTES) -> Predictions:
    """Read a predictions file: a readable ``.npz`` of plain arrays with the keys of SPEC.md §2.

    Keys, dtypes and shapes are checked from the array headers before anything is loaded: with
    ``split``, the rows must be the evaluation set's ids (``which``: ``test`` = test + open, or
    ``val``; with ``partial`` at most that many) and the columns its classes; the arrays together
    must fit ``max_bytes``. The contents are validated against the split by :func:`align`
    (``evaluate`` does both).
    """
    with npz.inspect(path, "a predictions .npz (SPEC.md §2)") as archive:
        members = archive.members
        npz.check_keys(members, REQUIRED_KEYS, OPTIONAL_KEYS, "a predictions file needs ids, split_fingerprint and logits or probs")
        has_logits, has_probs = "logits" in members, "probs" in members
        if has_logits == has_probs:
            raise OltrError(f"logits/probs: found {'both' if has_logits else 'neither'}; expected exactly one of the two keys")
        _check_declared(members, "logits" if has_logits else "probs", split, which, partial)
        if archive.nbytes > max_bytes:
            raise OltrError(f"{archive.path}: the arrays declare {archive.nbytes:,} bytes, more than the {max_bytes:,} this "
                            "evaluation may allocate; expected at most the split's ids x classes")
        arrays = {key: archive.load(key) for key in members}
    meta: dict[str, Any] = {}
    if "meta" in arrays:
        meta = loads(_string_scalar(arrays, "meta"), "meta", "a JSON object as a string")
        if not isinstance(meta, dict):
            raise OltrError(f"meta: found a JSON {type(meta).__name__}; expected a JSON object")
        if "method" in meta and not isinstance(meta["method"], str):
            raise OltrError(f"meta.method: found {meta['method']!r}; expected the method's name as a string")
    return Predictions(
        ids=arrays["ids"],
        scores=arrays["logits" if has_logits else "probs"],
        scores_are_probs=has_probs,
        split_fingerprint=_string_scalar(arrays, "split_fingerprint"),
        pred=arrays.get("pred"),
        known_score=arrays.get("known_score"),
        meta=meta,
    )


def _check_declared(members: dict[str, npz.Member], scores_key: str, split: SplitDir | None, which: str, partial: bool) -> None:
    """Kinds and shapes from the headers, and against the split when it is known (before any allocation)."""
    for key in ("split_fingerprint", "meta"):
        if key in members and (members[key].shape != () or members[key].dtype.kind != "U"):
            raise OltrError(f"{key}: found {members[key].describe()}; expected a string scalar (np.asarray(text, dtype=str))")
    ids = members["ids"]
    if len(ids.shape) != 1 or ids.dtype.kind != "U":
        raise OltrError(f"ids: found {ids.describe()}; expected a 1-D array of strings (np.asarray(ids, dtype=str))")
    scores = members[scores_key]
    if len(scores.shape) != 2 or scores.dtype.kind != "f":
        raise OltrError(f"{scores_key}: found {scores.describe()}; expected a 2-D float array [N, C]")
    for key, kinds, kind in (("pred", "iu", "an integer"), ("known_score", "f", "a float")):
        if key in members and (members[key].shape != ids.shape or members[key].dtype.kind not in kinds):
            raise OltrError(f"{key}: found {members[key].describe()}; expected {kind} array of shape {ids.shape}")
    if split is None:
        return
    n = expected_count(split, which)
    if ids.shape[0] > n:  # fewer rows are refused by align, which says which ids are missing
        lists = "val list" if which == "val" else "test and open lists"
        raise OltrError(f"ids: the header declares {ids.shape[0]:,} rows; expected at most {n:,}, one per id of the split's {lists}")
    if scores.shape[0] != ids.shape[0]:
        raise OltrError(f"{scores_key}: found {scores.shape[0]:,} rows; expected one per id ({ids.shape[0]:,})")
    if scores.shape[1] != split.num_classes:
        raise OltrError(f"{scores_key}: found {scores.shape[1]:,} columns; expected {split.num_classes:,} (the split's class count)")


def evaluation_lists(split: SplitDir, which: str) -> list[str]:
    """The lists of an evaluation set: ``val``, or ``test`` = the test list then the open list."""
    return ["val"] if which == "val" else [s for s in ("test", "open") if split.has(s)]


def expected_count(split: SplitDir, which: str) -> int:
    """The number of ids of an evaluation set, from the manifest."""
    return sum(int(split.manifest["files"][part]["lines"]) for part in evaluation_lists(split, which))


def expected_ids(split: SplitDir, which: str) -> tuple[list[str], np.ndarray, dict[str, str]]:
    """Ids, labels and the list each id comes from for an evaluation set."""
    ids, labels, origin = [], [], {}
    for part in evaluation_lists(split, which):
        for path, label in split.entries(part):
            ids.append(path)
            labels.append(label)
            origin[path] = part
    return ids, np.asarray(labels, dtype=np.int64), origin


def _abbreviate(fingerprint: str) -> str:
    """The first 16 characters of a long fingerprint and '...'; a short (wrong) value whole, quoted."""
    return f"{fingerprint[:16]}..." if len(fingerprint) > 16 else repr(fingerprint)


def _first_bad(ids: np.ndarray, bad: np.ndarray) -> str:
    return str(ids[np.flatnonzero(bad)[0]])


def check_arrays(preds: Predictions, num_classes: int) -> None:
    """Kinds, shapes and values of the arrays: 2-D finite float scores with ``num_classes`` columns,
    probability rows that sum to 1, ``pred`` in {-1, 0..C-1}, finite ``known_score``."""
    ids, scores, key = preds.ids, preds.scores, preds.scores_key
    if ids.ndim != 1 or ids.dtype.kind != "U":
        raise OltrError(f"ids: found {_describe(ids)}; expected a 1-D array of strings (np.asarray(ids, dtype=str))")
    if scores.ndim != 2 or scores.dtype.kind != "f":
        raise OltrError(f"{key}: found {_describe(scores)}; expected a 2-D float array [N, C]")
    if scores.shape[0] != ids.shape[0]:
        raise OltrError(f"{key}: found {scores.shape[0]:,} rows; expected one per id ({ids.shape[0]:,})")
    if scores.shape[1] != num_classes:
        raise OltrError(f"{key}: found {scores.shape[1]:,} columns; expected {num_classes:,} (the split's class count)")
    bad = ~np.isfinite(scores).all(axis=1)
    if bad.any():
        raise OltrError(f"{key}: found {int(bad.sum()):,} rows with NaN or infinite values (first: {_first_bad(ids, bad)}); expected finite values")
    if preds.scores_are_probs and len(scores):
        negative = (scores < 0).any(axis=1)
        if negative.any():
            raise OltrError(f"probs: found {int(negative.sum()):,} rows with negative values (first: {_first_bad(ids, negative)}); expected probabilities >= 0")
        error = np.abs(scores.sum(axis=1, dtype=np.float64) - 1.0)
        off = error > PROBS_TOLERANCE
        if off.any():
            worst = int(np.argmax(error))
            raise OltrError(
                f"probs: found {int(off.sum()):,} rows that do not sum to 1 (worst: {ids[worst]} sums to "
                f"{scores[worst].sum(dtype=np.float64):.6g}); expected rows that sum to 1 within {PROBS_TOLERANCE:g}"
            )
    if preds.pred is not None:
        pred = preds.pred
        if pred.shape != ids.shape or pred.dtype.kind not in "iu":
            raise OltrError(f"pred: found {_describe(pred)}; expected an integer array of shape {ids.shape}")
        bad = (pred < -1) | (pred >= num_classes)
        if bad.any():
            raise OltrError(
                f"pred: found {int(bad.sum()):,} values outside {{-1, 0..{num_classes - 1}}} "
                f"(first: {int(pred[bad][0])} for {_first_bad(ids, bad)}); expected -1 (rejected) or a class index"
            )
    if preds.known_score is not None:
        known_score = preds.known_score
        if known_score.shape != ids.shape or known_score.dtype.kind != "f":
            raise OltrError(f"known_score: found {_describe(known_score)}; expected a float array of shape {ids.shape}")
        bad = ~np.isfinite(known_score)
        if bad.any():
            raise OltrError(f"known_score: found {int(bad.sum()):,} NaN or infinite values (first: {_first_bad(ids, bad)}); expected finite scores")


def align(preds: Predictions, split: SplitDir, which: str, partial: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """Validate ``preds`` against the split; return ``rows`` and ``labels`` in the split's id order.

    ``rows[i]`` is the row of ``preds`` that holds the i-th id of the evaluation set (``val``, or
    ``test`` = the test list then the open list) and ``labels[i]`` its label. The ids must be
    exactly those of the set, each once, in any order. With ``partial`` (``--quick`` runs) ids
    may be missing and only those present are scored; such results are never a valid submission.
    """
    if preds.split_fingerprint != split.fingerprint:
        raise OltrError(
            f"split_fingerprint: found {_abbreviate(preds.split_fingerprint)}; expected {_abbreviate(split.fingerprint)}, the "
            f"fingerprint of {split.path}; evaluate against the split the predictions were made for"
        )
    check_arrays(preds, split.num_classes)
    ids, labels, origin = expected_ids(split, which)
    position: dict[str, int] = {}
    duplicates = []
    for i, pid in enumerate(preds.ids.tolist()):
        if pid in position:
            duplicates.append(pid)
        position[pid] = i
    if duplicates:
        raise OltrError(f"ids: found {len(duplicates):,} ids more than once (first: {duplicates[0]}); expected each id once")
    extra = [pid for pid in position if pid not in origin]
    if extra:
        lists = "val list" if which == "val" else "test and open lists"
        raise OltrError(f"ids: found {len(extra):,} ids that are not in the split's {lists} (first: {extra[0]}); expected only ids of those lists")
    present = np.fromiter((pid in position for pid in ids), dtype=bool, count=len(ids))
    if partial:
        if not present.any():
            raise OltrError(f"ids: found none of the split's {which} ids; expected at least one, even with --partial")
        ids, labels = [pid for pid, ok in zip(ids, present) if ok], labels[present]
    elif not present.all():
        by_list: dict[str, list[str]] = {}
        for pid, ok in zip(ids, present):
            if not ok:
                by_list.setdefault(origin[pid], []).append(pid)
        parts = [f"{len(v):,} {k} ids missing (first: {v[0]})" for k, v in by_list.items()]
        raise OltrError("ids: " + "; ".join(parts) + "; expected every id of the evaluation set once (--partial scores a subset)")
    rows = np.fromiter((position[pid] for pid in ids), dtype=np.int64, count=len(ids))
    return rows, labels

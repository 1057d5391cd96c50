"""Predictions files (SPEC.md §2): one ``.npz`` per evaluation set, validated before scoring.

Keys: ``ids`` (str [N]), ``logits`` or ``probs`` (float [N, C]), optional ``pred`` (int [N],
-1 = rejected), optional ``known_score`` (float [N]), ``split_fingerprint`` (str scalar),
optional ``meta`` (JSON str scalar). Files are loaded with ``allow_pickle=False``.
"""

from __future__ import annotations

import io
import json
import os
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from oltr_bench.errors import OltrError
from oltr_bench.metrics.core import softmax
from oltr_bench.splits.format import SplitDir
from oltr_bench.utils.io import atomic_write_bytes

ALLOWED_KEYS = {"ids", "logits", "probs", "pred", "known_score", "split_fingerprint", "meta"}


@dataclass
class Predictions:
    ids: np.ndarray
    scores: np.ndarray  # logits or probs, [N, C]
    scores_are_probs: bool
    split_fingerprint: str
    pred: np.ndarray | None = None
    known_score: np.ndarray | None = None
    meta: dict[str, Any] = field(default_factory=dict)

    def probs(self) -> np.ndarray:
        return np.asarray(self.scores, dtype=np.float64) if self.scores_are_probs else softmax(self.scores)


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
    """Write a predictions file atomically (exactly one of ``logits``/``probs``)."""
    if (logits is None) == (probs is None):
        raise ValueError("give exactly one of logits or probs")
    arrays: dict[str, np.ndarray] = {
        "ids": np.asarray(ids, dtype=np.str_),
        "split_fingerprint": np.asarray(split_fingerprint, dtype=np.str_),
    }
    arrays["logits" if logits is not None else "probs"] = np.asarray(logits if logits is not None else probs, dtype=np.float32)
    if pred is not None:
        arrays["pred"] = np.asarray(pred, dtype=np.int64)
    if known_score is not None:
        arrays["known_score"] = np.asarray(known_score, dtype=np.float32)
    if meta is not None:
        arrays["meta"] = np.asarray(json.dumps(meta, sort_keys=True), dtype=np.str_)
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    atomic_write_bytes(path, buffer.getvalue())


def load_predictions(path: str | os.PathLike) -> Predictions:
    """Read a predictions file, checking keys, dtypes and shapes (not yet the split: see :func:`align`)."""
    path = Path(path)
    if not path.is_file():
        raise OltrError(f"--predictions {path} does not exist")
    try:
        with np.load(path, allow_pickle=False) as data:
            arrays = {key: data[key] for key in data.files}
    except ValueError as exc:
        raise OltrError(f"{path}: contains pickled objects, which are not accepted ({exc}); store plain arrays") from None
    except (OSError, zipfile.BadZipFile) as exc:
        raise OltrError(f"{path} is not a readable .npz file: {exc}") from None
    unknown = sorted(set(arrays) - ALLOWED_KEYS)
    if unknown:
        raise OltrError(f"{path}: unexpected keys {unknown}; expected only {sorted(ALLOWED_KEYS)}")
    for key in ("ids", "split_fingerprint"):
        if key not in arrays:
            raise OltrError(f"{path}: key {key!r} is missing")
    has_logits, has_probs = "logits" in arrays, "probs" in arrays
    if has_logits == has_probs:
        raise OltrError(f"{path}: expected exactly one of 'logits' or 'probs', found {'both' if has_logits else 'neither'}")
    ids = arrays["ids"]
    if ids.ndim != 1 or ids.dtype.kind != "U":
        raise OltrError(f"ids: expected a 1-D array of strings, found dtype {ids.dtype} with shape {ids.shape}")
    key = "logits" if has_logits else "probs"
    scores = arrays[key]
    if scores.ndim != 2 or scores.dtype.kind != "f":
        raise OltrError(f"{key}: expected a 2-D float array [N, C], found dtype {scores.dtype} with shape {scores.shape}")
    if scores.shape[0] != ids.shape[0]:
        raise OltrError(f"{key}: {scores.shape[0]} rows but ids has {ids.shape[0]} entries")
    if not np.all(np.isfinite(scores)):
        bad = int(np.sum(~np.isfinite(scores).all(axis=1)))
        raise OltrError(f"{key}: {bad:,} rows contain NaN or infinite values; expected finite scores")
    if has_probs:
        if np.any(scores < 0):
            raise OltrError("probs: negative probabilities found; expected values in [0, 1]")
        sums = scores.astype(np.float64).sum(axis=1)
        worst = int(np.argmax(np.abs(sums - 1)))
        if abs(sums[worst] - 1) > 1e-3:
            raise OltrError(f"probs: row {worst} ({ids[worst]}) sums to {sums[worst]:.6f}; expected rows that sum to 1")
    fp = arrays["split_fingerprint"]
    if fp.ndim != 0 or fp.dtype.kind != "U":
        raise OltrError(f"split_fingerprint: expected a string scalar, found dtype {fp.dtype} with shape {fp.shape}")
    pred = arrays.get("pred")
    if pred is not None:
        if pred.shape != ids.shape or pred.dtype.kind not in "iu":
            raise OltrError(f"pred: expected an integer array of shape {ids.shape}, found dtype {pred.dtype} with shape {pred.shape}")
        bad = (pred < -1) | (pred >= scores.shape[1])
        if bad.any():
            raise OltrError(f"pred: {int(bad.sum()):,} values outside {{-1, 0..{scores.shape[1] - 1}}} (first: {int(pred[bad][0])})")
    known_score = arrays.get("known_score")
    if known_score is not None:
        if known_score.shape != ids.shape or known_score.dtype.kind != "f":
            raise OltrError(f"known_score: expected a float array of shape {ids.shape}, found dtype {known_score.dtype} with shape {known_score.shape}")
        if not np.all(np.isfinite(known_score)):
            raise OltrError("known_score: contains NaN or infinite values; expected finite scores")
    meta: dict[str, Any] = {}
    if "meta" in arrays:
        try:
            meta = json.loads(str(arrays["meta"]))
        except json.JSONDecodeError as exc:
            raise OltrError(f"meta: expected a JSON string, found invalid JSON ({exc})") from None
    return Predictions(ids, scores, has_probs, str(fp), pred, known_score, meta)


def expected_ids(split: SplitDir, which: str) -> tuple[list[str], np.ndarray, dict[str, str]]:
    """Ids, labels and the list each id comes from for an evaluation set (``val`` or ``test`` = test + open)."""
    parts = ["val"] if which == "val" else [s for s in ("test", "open") if split.has(s)]
    ids, labels, origin = [], [], {}
    for part in parts:
        for path, label in split.entries(part):
            ids.append(path)
            labels.append(label)
            origin[path] = part
    return ids, np.asarray(labels, dtype=np.int64), origin


def align(preds: Predictions, split: SplitDir, which: str, partial: bool = False) -> tuple[Predictions, np.ndarray]:
    """Check ``preds`` against the split and reorder it to the split's id order; return it and the labels.

    With ``partial`` (``--quick`` runs) ids of the split may be missing and only those present
    are scored; such results are never a valid submission.
    """
    if preds.split_fingerprint != split.fingerprint:
        raise OltrError(
            f"split_fingerprint: the predictions were made for split {preds.split_fingerprint[:16]}..., "
            f"but {split.path} has fingerprint {split.fingerprint[:16]}...; evaluate against the split they were made for"
        )
    ids, labels, origin = expected_ids(split, which)
    if preds.scores.shape[1] != split.num_classes:
        raise OltrError(f"{'probs' if preds.scores_are_probs else 'logits'}: {preds.scores.shape[1]} columns; expected {split.num_classes} (the split's class count)")
    got = preds.ids.tolist()
    position: dict[str, int] = {}
    duplicates = []
    for i, pid in enumerate(got):
        if pid in position:
            duplicates.append(pid)
        position[pid] = i
    if duplicates:
        raise OltrError(f"ids: {len(duplicates):,} ids appear more than once (first: {duplicates[0]})")
    extra = [pid for pid in got if pid not in origin]
    if extra:
        raise OltrError(f"ids: {len(extra):,} ids are not in the split's {which} lists (first: {extra[0]})")
    missing = [pid for pid in ids if pid not in position]
    if partial:
        keep = [i for i, pid in enumerate(ids) if pid in position]
        ids, labels = [ids[i] for i in keep], labels[keep]
    elif missing:
        by_list: dict[str, list[str]] = {}
        for pid in missing:
            by_list.setdefault(origin[pid], []).append(pid)
        parts = [f"{len(v):,} {k} ids missing (first: {v[0]})" for k, v in by_list.items()]
        raise OltrError("ids: " + "; ".join(parts))
    order = np.fromiter((position[pid] for pid in ids), dtype=np.int64, count=len(ids))
    aligned = Predictions(
        ids=preds.ids[order],
        scores=preds.scores[order],
        scores_are_probs=preds.scores_are_probs,
        split_fingerprint=preds.split_fingerprint,
        pred=None if preds.pred is None else preds.pred[order],
        known_score=None if preds.known_score is None else preds.known_score[order],
        meta=preds.meta,
    )
    return aligned, labels

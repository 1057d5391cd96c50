"""Embeddings files (SPEC.md §6): probes and distractors of a face identification test, validated
before scoring, the way predictions files are (:mod:`oltr_bench.metrics.predictions`).

Keys: ``probe_ids`` (str [P]), ``probe_identity`` (str [P]), ``probe_features`` (float [P, D]),
``distractor_ids`` (str [M]), ``distractor_features`` (float [M, D]), optional
``probe_train_count`` (int [P]), ``distractor_identity`` (str [M]) and ``meta`` (a JSON object
as a str scalar). Files are read with ``allow_pickle=False``; kinds and shapes are checked from
the array headers before anything is allocated, and the distractor features are never loaded
whole: :meth:`EmbeddingsFile.distractor_blocks` streams them from the archive, checking each
block. Every message names the key, what was found and what was expected.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Iterator

import numpy as np

from oltr_bench.errors import OltrError
from oltr_bench.formats import npz
from oltr_bench.formats.jsonio import loads
from oltr_bench.utils.io import atomic_open

WHAT = "an embeddings .npz (SPEC.md §6)"
REQUIRED_KEYS = ("probe_ids", "probe_identity", "probe_features", "distractor_ids", "distractor_features")
OPTIONAL_KEYS = ("probe_train_count", "distractor_identity", "meta")
MAX_BYTES = 8 * 2**30  # what an evaluation may hold at once: probes, ids and one distractor block (features stream)


def write_embeddings(path: str | os.PathLike, *, probe_ids, probe_identity, probe_features, distractor_ids,
                     distractor_features, probe_train_count=None, distractor_identity=None,
                     meta: dict[str, Any] | None = None) -> None:
    """Write an embeddings file atomically (float64 features stay float64, others become float32)."""

    def floats(values) -> np.ndarray:
        values = np.asarray(values)
        return values if values.dtype == np.float64 else values.astype(np.float32, copy=False)

    arrays: dict[str, np.ndarray] = {
        "probe_ids": np.asarray(probe_ids, dtype=np.str_), "probe_identity": np.asarray(probe_identity, dtype=np.str_),
        "probe_features": floats(probe_features), "distractor_ids": np.asarray(distractor_ids, dtype=np.str_),
        "distractor_features": floats(distractor_features),
    }
    if probe_train_count is not None:
        arrays["probe_train_count"] = np.asarray(probe_train_count, dtype=np.int64)
    if distractor_identity is not None:
        arrays["distractor_identity"] = np.asarray(distractor_identity, dtype=np.str_)
    if meta is not None:
        arrays["meta"] = np.asarray(json.dumps(meta, sort_keys=True), dtype=np.str_)
    with atomic_open(path) as fh:
        np.savez(fh, **arrays)


def _first(ids: np.ndarray, bad: np.ndarray) -> str:
    return str(ids[np.flatnonzero(bad)[0]])


class EmbeddingsFile:
    """An opened, validated embeddings file (a context manager): probes loaded, distractors streamed."""

    def __init__(self, path: str | os.PathLike, max_bytes: int = MAX_BYTES, block_rows: int = 8192):
        self.path = Path(path)
        self.archive = npz.inspect(path, WHAT)
        try:
            self._check_declared(max_bytes, block_rows)
            self._load()
        except BaseException:
            self.archive.__exit__(None, None, None)
            raise

    def __enter__(self) -> "EmbeddingsFile":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.archive.__exit__(*exc)

    def _check_declared(self, max_bytes: int, block_rows: int) -> None:
        members = self.archive.members
        npz.check_keys(members, REQUIRED_KEYS, OPTIONAL_KEYS, f"an embeddings file needs {', '.join(REQUIRED_KEYS)}")
        for key in ("probe_ids", "probe_identity", "distractor_ids", "distractor_identity"):
            if key in members and (len(members[key].shape) != 1 or members[key].dtype.kind != "U"):
                raise OltrError(f"{key}: found {members[key].describe()}; expected a 1-D array of strings (np.asarray(ids, dtype=str))")
        for key, ids in (("probe_features", "probe_ids"), ("distractor_features", "distractor_ids")):
            m = members[key]
            if len(m.shape) != 2 or m.dtype.kind != "f":
                raise OltrError(f"{key}: found {m.describe()}; expected a 2-D float array [N, D]")
            if m.shape[0] != members[ids].shape[0]:
                raise OltrError(f"{key}: found {m.shape[0]:,} rows; expected one per id of {ids} ({members[ids].shape[0]:,})")
        p, d = members["probe_features"].shape, members["distractor_features"].shape
        if p[1] != d[1] or p[1] == 0:
            raise OltrError(f"distractor_features: found {d[1]:,} columns; expected the probes' embedding size ({p[1]:,}), at least 1")
        for key, ref in (("probe_identity", "probe_ids"), ("distractor_identity", "distractor_ids")):
            if key in members and members[key].shape != members[ref].shape:
                raise OltrError(f"{key}: found {members[key].shape[0]:,} values; expected one per id of {ref} ({members[ref].shape[0]:,})")
        if "probe_train_count" in members:
            m = members["probe_train_count"]
            if m.shape != members["probe_ids"].shape or m.dtype.kind not in "iu":
                raise OltrError(f"probe_train_count: found {m.describe()}; expected an integer array of shape {members['probe_ids'].shape}")
        if "meta" in members and (members["meta"].shape != () or members["meta"].dtype.kind != "U"):
            raise OltrError(f"meta: found {members['meta'].describe()}; expected a string scalar (np.asarray(text, dtype=str))")
        held = sum(m.nbytes for k, m in members.items() if k != "distractor_features")
        held += 3 * members["probe_features"].nbytes  # float64 copies of the probes
        held += min(block_rows, d[0]) * d[1] * (members["distractor_features"].dtype.itemsize + 16)
        if held > max_bytes:
            raise OltrError(f"{self.path}: the arrays declare {held:,} bytes to hold at once (ids, probes, one distractor block), "
                            f"more than the {max_bytes:,} this evaluation may allocate")

    def _load(self) -> None:
        a = self.archive
        self.probe_ids = a.load("probe_ids")
        self.probe_identity = a.load("probe_identity")
        self.probe_features = a.load("probe_features")
        self.distractor_ids = a.load("distractor_ids")
        self.distractor_identity = a.load("distractor_identity") if "distractor_identity" in a.members else None
        self.probe_train_count = a.load("probe_train_count") if "probe_train_count" in a.members else None
        self.meta: dict[str, Any] = {}
        if "meta" in a.members:
            meta = loads(str(a.load("meta")), "meta", "a JSON object as a string")
            if not isinstance(meta, dict):
                raise OltrError(f"meta: found a JSON {type(meta).__name__}; expected a JSON object")
            self.meta = meta
        bad = ~np.isfinite(self.probe_features).all(axis=1)
        if bad.any():
            raise OltrError(f"probe_features: found {int(bad.sum()):,} rows with NaN or infinite values (first: "
                            f"{_first(self.probe_ids, bad)}); expected finite values")
        zero = ~(np.abs(self.probe_features) > 0).any(axis=1)
        if zero.any():
            raise OltrError(f"probe_features: found {int(zero.sum()):,} all-zero rows (first: {_first(self.probe_ids, zero)}); "
                            "expected embeddings with a direction (they are L2-normalised)")
        if self.probe_train_count is not None and (self.probe_train_count < 0).any():
            bad = self.probe_train_count < 0
            raise OltrError(f"probe_train_count: found {int(bad.sum()):,} negative values (first: {_first(self.probe_ids, bad)}); "
                            "expected training image counts >= 0")
        for key, ids in (("probe_ids", self.probe_ids), ("distractor_ids", self.distractor_ids)):
            values, counts = np.unique(ids, return_counts=True)
            if (counts > 1).any():
                raise OltrError(f"{key}: found {int((counts > 1).sum()):,} ids more than once (first: {values[counts > 1][0]}); "
                                "expected each id once")
        both = np.intersect1d(self.probe_ids, self.distractor_ids)
        if len(both):
            raise OltrError(f"distractor_ids: found {len(both):,} probe ids among the distractors (first: {both[0]}); expected "
                            "distractor images that are not probes")
        if self.distractor_identity is not None:
            shared = np.intersect1d(self.probe_identity, self.distractor_identity)
            if len(shared):
                raise OltrError(f"distractor_identity: found {len(shared):,} probe identities among the distractors (first: "
                                f"{shared[0]}); expected distractors of other identities only")
        if self.probe_train_count is not None:
            # one count per identity: the shot group is the identity's
            order = np.lexsort((self.probe_train_count, self.probe_identity))
            ident, cnt = self.probe_identity[order], self.probe_train_count[order]
            clash = (ident[1:] == ident[:-1]) & (cnt[1:] != cnt[:-1])
            if clash.any():
                raise OltrError(f"probe_train_count: identity {ident[1:][clash][0]} has probes with different counts; expected "
                                "one training count per identity")

    @property
    def num_distractors(self) -> int:
        return int(self.archive.members["distractor_features"].shape[0])

    def select(self, count: int | None = None, subset: np.ndarray | None = None) -> tuple[int, np.ndarray | None]:
        """The distractors to use: the first ``count``, or the rows of the ids in ``subset``.
        Returns the number used and the sorted row indices (None: a prefix)."""
        if subset is not None:
            position = {pid: i for i, pid in enumerate(self.distractor_ids.tolist())}
            missing = [pid for pid in subset.tolist() if pid not in position]
            if missing:
                raise OltrError(f"the subset list names {len(missing):,} ids that are not distractors of {self.path} (first: "
                                f"{missing[0]}); expected distractor_ids of the embeddings file")
            rows = np.unique(np.fromiter((position[p] for p in subset.tolist()), dtype=np.int64, count=len(subset)))
            return len(rows), rows
        total = self.num_distractors
        if count is None:
            return total, None
        if count < 1 or count > total:
            raise OltrError(f"--distractors {count:,}: expected 1 to {total:,}, the distractors in {self.path}")
        return count, None

    def distractor_blocks(self, rows: int, count: int, selected: np.ndarray | None = None) -> Iterator[np.ndarray]:
        """The chosen distractor features in blocks of ``rows``, each checked finite and non-zero."""
        start = 0
        stop = count if selected is None else int(selected[-1]) + 1
        for block in self.archive.iter_rows("distractor_features", rows, stop):
            ids = self.distractor_ids[start:start + len(block)]
            if selected is not None:
                keep = selected[(selected >= start) & (selected < start + len(block))] - start
                block, ids = block[keep], ids[keep]
            start += rows
            bad = ~np.isfinite(block).all(axis=1)
            if bad.any():
                raise OltrError(f"distractor_features: found a row with NaN or infinite values ({_first(ids, bad)}); expected finite values")
            zero = ~(np.abs(block) > 0).any(axis=1)
            if zero.any():
                raise OltrError(f"distractor_features: found an all-zero row ({_first(ids, zero)}); expected embeddings with a direction")
            if len(block):
                yield block

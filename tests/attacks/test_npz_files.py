"""Predictions files from strangers: what their headers declare is refused before any allocation."""

from __future__ import annotations

import pickle
import tracemalloc
import zipfile

import numpy as np
import pytest

from oltr_bench.errors import OltrError
from oltr_bench.metrics.predictions import load_predictions
from tests.hostile import header_only, npy_bytes, npz, refused
from tests.tiny_data import make_tiny_split


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    return make_tiny_split(tmp_path_factory.mktemp("tiny"))


def members(split, n: int | None = None, c: int | None = None) -> dict[str, bytes]:
    ids = (split.ids("test") + split.ids("open"))[: n]
    return {"ids": npy_bytes(np.asarray(ids)), "split_fingerprint": npy_bytes(np.asarray(split.fingerprint)),
            "logits": npy_bytes(np.zeros((len(ids), c or split.num_classes), np.float32))}


def evaluate(cli, path, split, *extra):
    return cli("evaluate", "--predictions", str(path), "--splits", str(split.path), "--json", str(path.parent / "r.json"), *extra,
               ok=False)


def rows(split, n: int) -> dict[str, bytes]:
    ids = [f"x/{i}.png" for i in range(n)]
    return {"ids": npy_bytes(np.asarray(ids)), "split_fingerprint": npy_bytes(np.asarray(split.fingerprint)),
            "logits": npy_bytes(np.zeros((n, split.num_classes), np.float32))}


CASES = {
    # name: (members, expected message)
    "more rows than the split has ids": (lambda s: rows(s, 30), "ids: the header declares 30 rows; expected at most 24"),
    "another class count": (lambda s: members(s, c=1000), "logits: found 1,000 columns; expected 6 (the split's class count)"),
    "logits rows that are not the ids'": (lambda s: {**members(s), "logits": npy_bytes(np.zeros((40, 6), np.float32))},
                                          "logits: found 40 rows; expected one per id (24)"),
    "a header that lies about its size": (lambda s: {**members(s), "logits": header_only((24, 6))},
                                          "the header declares dtype float32 with shape (24, 6) (576 bytes) but the member holds 0"),
    "a billion declared rows": (lambda s: {**members(s), "ids": header_only((10**9,), "<U20")},
                                "ids: the header declares dtype <U20 with shape (1000000000,) (80,000,000,000 bytes) but the member holds 0"),
    "an object array (pickle)": (lambda s: {**members(s), "pred": _object_array()}, "pred: found an object array, which would need unpickling"),
    "ids of 5,000 characters": (lambda s: {**members(s), "ids": npy_bytes(np.asarray(s.ids("test") + s.ids("open"), dtype="<U5000"))},
                                "ids: found strings of up to 5,000 characters; expected ids of at most 4,096"),
    "an impossible dtype": (lambda s: {**members(s), "ids": header_only((24,), "<U1000000000")}, "ids: found a zip member that is not a .npy array"),
    "a member that is not .npy": (lambda s: {**members(s), "ids": b"id,label\n1,2\n"}, "ids: found a zip member that is not a .npy array"),
}


def _object_array() -> bytes:
    import io

    buffer = io.BytesIO()
    np.lib.format.write_array(buffer, np.array([object()] * 17, dtype=object), allow_pickle=True)
    return buffer.getvalue()


@pytest.mark.parametrize("case", CASES)
def test_declared_shapes_and_kinds_are_refused_from_the_headers(cli, tmp_path, tiny, case):
    build, expected = CASES[case]
    path = npz(tmp_path / "p.npz", build(tiny))
    tracemalloc.start()
    try:
        refused(evaluate(cli, path, tiny), expected)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 64 * 2**20  # nothing of what the headers declare was allocated
    assert not (tmp_path / "r.json").exists()


def test_a_zip_bomb_is_refused_before_decompression(cli, tmp_path, tiny):
    parts = members(tiny)
    parts["logits"] = header_only((24, 6)) + bytes(400 * 2**20)  # 400 MB of zeros compress to ~0.4 MB
    path = npz(tmp_path / "p.npz", parts, zipfile.ZIP_DEFLATED)
    assert path.stat().st_size < 2**20
    tracemalloc.start()
    try:
        refused(evaluate(cli, path, tiny), "logits:", "would decompress to 419,430,528", "refused as a decompression bomb")
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 64 * 2**20


def test_the_memory_budget_is_checked_before_loading(tmp_path, tiny):
    path = npz(tmp_path / "p.npz", members(tiny))
    with pytest.raises(OltrError, match=r"the arrays declare [\d,]+ bytes, more than the 100 this evaluation may allocate"):
        load_predictions(path, tiny, max_bytes=100)


@pytest.mark.parametrize("content, expected", [
    (pickle.dumps({"ids": ["a"]}), "found a file that starts with b'\\x80"),
    (b"PK\x03\x04 cut short", "is not a readable .npz file"),
    (npy_bytes(np.zeros(3)), "found a single .npy array"),
])
def test_files_that_are_not_archives_are_never_unpickled(cli, tmp_path, tiny, content, expected):
    (tmp_path / "p.npz").write_bytes(content)
    refused(evaluate(cli, tmp_path / "p.npz", tiny), expected)

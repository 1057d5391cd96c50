"""Fuzzing the reader of every SPEC.md format: whatever the bytes, a reader returns or raises
OltrError (one message), never another exception. About a minute in all (slow subset)."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from oltr_bench.errors import OltrError
from oltr_bench.formats.results import load_results
from oltr_bench.metrics.evaluate import evaluate_file
from oltr_bench.report import entries as lb
from oltr_bench.splits.format import check_manifest, parse_list
from tests.report_fixtures import make_entry, make_run
from tests.tiny_data import make_tiny_split

pytestmark = pytest.mark.slow
FUZZ = settings(max_examples=150, deadline=None, suppress_health_check=list(HealthCheck))

JSON = st.recursive(
    st.none() | st.booleans() | st.integers(min_value=-2**70, max_value=2**70) | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda children: st.lists(children, max_size=5) | st.dictionaries(st.text(max_size=10), children, max_size=5),
    max_leaves=20,
)


@pytest.fixture(scope="module")
def work(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("fuzz")


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    return make_tiny_split(tmp_path_factory.mktemp("tiny"))


def mutated(document: dict, data) -> dict:
    """``document`` with one key removed, replaced by any JSON, or added."""
    out = copy.deepcopy(document)
    key = data.draw(st.sampled_from(sorted(out)) | st.text(max_size=8))
    action = data.draw(st.sampled_from(["delete", "replace"]))
    if action == "delete":
        out.pop(key, None)
    else:
        out[key] = data.draw(JSON)
    return out


def reads(fn, *args) -> None:
    try:
        fn(*args)
    except OltrError as exc:
        assert str(exc).strip() and "Traceback" not in str(exc)


@FUZZ
@given(text=st.text(max_size=200))
def test_list_files(text):
    reads(parse_list, text, "list", 5, False)


@FUZZ
@given(data=st.data())
def test_split_manifests(tiny, data):
    manifest = mutated(json.loads((tiny.path / "manifest.json").read_text()), data)
    reads(check_manifest, manifest, "manifest.json")


@pytest.fixture(scope="module")
def valid_results(work) -> dict:
    return json.loads((make_run(work / "runs", seed=0) / "results.json").read_text())


@pytest.fixture(scope="module")
def valid_entry(work) -> dict:
    return json.loads(make_entry(work / "valid", "v").read_text())


@FUZZ
@given(data=st.data(), raw=st.binary(max_size=300))
def test_results_files(work, valid_results, data, raw):
    valid = valid_results
    path = work / "results.json"
    path.write_bytes(raw if data.draw(st.booleans()) else json.dumps(mutated(valid, data)).encode())
    reads(load_results, path)


@FUZZ
@given(data=st.data(), raw=st.binary(max_size=300))
def test_leaderboard_entries(work, valid_entry, data, raw):
    valid = valid_entry
    path = work / "lb" / "toy_lt" / "e.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(raw if data.draw(st.booleans()) else json.dumps(mutated(valid, data)).encode())
    errors = lb.validate_files([path])[path]
    assert all(isinstance(e, str) and e for e in errors)


ARRAYS = hnp.arrays(
    dtype=st.sampled_from([np.float32, np.float64, np.int64, np.uint8, np.bool_, np.dtype("<U8"), np.complex64]),
    shape=hnp.array_shapes(min_dims=0, max_dims=3, max_side=30),
)
KEYS = st.sampled_from(["ids", "logits", "probs", "pred", "known_score", "split_fingerprint", "meta", "junk"])


@FUZZ
@given(arrays=st.dictionaries(KEYS, ARRAYS, max_size=6), raw=st.binary(max_size=200), use_raw=st.booleans())
def test_predictions_files(tiny, work, arrays, raw, use_raw):
    path = work / "p.npz"
    if use_raw:
        path.write_bytes(raw)
    else:
        np.savez(path, **arrays)
    reads(evaluate_file, path, tiny)


@FUZZ
@given(data=st.data())
def test_predictions_of_nearly_the_right_shape(tiny, work, data):
    """Valid files with one array swapped for a random one: the checks after the headers hold too."""
    ids = tiny.ids("test") + tiny.ids("open")
    arrays = {"ids": np.asarray(ids), "logits": np.zeros((len(ids), tiny.num_classes), np.float32),
              "split_fingerprint": np.asarray(tiny.fingerprint)}
    key = data.draw(KEYS)
    arrays[key] = data.draw(ARRAYS | hnp.arrays(np.float32, (len(ids), tiny.num_classes),
                                                 elements=st.floats(width=32, allow_nan=True, allow_infinity=True)))
    np.savez(work / "p2.npz", **arrays)
    reads(evaluate_file, work / "p2.npz", tiny)

"""Embeddings files (SPEC.md §6), ``evaluate-faces`` and the MegaFace devkit files: one-line refusals
for every bad input, distractor selection, face_results.json, feature-file round trips, pack detection."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from oltr_bench.cli import main
from oltr_bench.formats import megaface
from oltr_bench.formats.results import load_face_results
from oltr_bench.metrics.embeddings import REQUIRED_KEYS, write_embeddings
from oltr_bench.metrics.faces import identification

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from hostile import npy_bytes, npz, refused  # noqa: E402


def arrays(seed=0, p=40, m=300, d=8):
    rng = np.random.default_rng(seed)
    ident = rng.integers(0, 6, p)
    return {
        "probe_ids": np.asarray([f"fs/{i}.png" for i in range(p)]),
        "probe_identity": np.asarray([f"id{i}" for i in ident]),
        "probe_features": (rng.normal(size=(p, d)) + 3 * rng.normal(size=(6, d))[ident]).astype(np.float32),
        "distractor_ids": np.asarray([f"mf/{i}.jpg" for i in range(m)]),
        "distractor_features": rng.normal(size=(m, d)).astype(np.float32),
        "probe_train_count": np.asarray([[0, 1, 5, 30, 200, 200][i] for i in ident], dtype=np.int64),
    }


def write(path, **changes):
    data = {**arrays(), **changes}
    data = {k: v for k, v in data.items() if v is not None}
    npz(path, {k: npy_bytes(np.asarray(v)) for k, v in data.items()})
    return path


def evaluate(*args):
    return CliRunner().invoke(main, ["evaluate-faces", "--no-progress", *map(str, args)])


def test_results_file_and_distractor_choice(tmp_path):
    emb = tmp_path / "emb.npz"
    a = arrays()
    write_embeddings(emb, **a, meta={"method": "plain", "protocol": "embedded", "dataset": "embedded"})
    out = tmp_path / "r.json"
    result = evaluate("--embeddings", emb, "--json", out, "--distractors", 120, "--block", 50)
    assert result.exit_code == 0, result.output
    data = load_face_results(out)
    direct = identification(a["probe_features"], a["probe_identity"], [a["distractor_features"][:120]], 120,
                            a["probe_train_count"], device="cpu")
    assert data["metrics"] == json.loads(json.dumps(direct["metrics"]))
    assert data["distractors"] == 120 and data["method"] == "plain" and data["protocol"] == "embedded"
    assert data["groups"]["rules"]["few"] == "2 <= n < 20" and "rank-1" in result.output
    subset = tmp_path / "megaface_features_list.json_100_1"
    chosen = a["distractor_ids"][::3][:100]
    subset.write_text(json.dumps({"path": chosen.tolist()}))
    result = evaluate("--embeddings", emb, "--json", out, "--subset", subset, "--block", 64)
    assert result.exit_code == 0, result.output
    data = load_face_results(out)
    direct = identification(a["probe_features"], a["probe_identity"], [a["distractor_features"][::3][:100]], 100,
                            a["probe_train_count"], device="cpu")
    assert data["metrics"] == json.loads(json.dumps(direct["metrics"])) and data["distractor_subset"] == subset.name


@pytest.mark.parametrize("key", REQUIRED_KEYS)
def test_every_missing_key_is_refused(tmp_path, key):
    refused(evaluate("--embeddings", write(tmp_path / "e.npz", **{key: None})), f"{key}: missing")


@pytest.mark.parametrize("changes, needles", [
    ({"probe_features": np.zeros((40, 8), dtype=np.int32)}, ("probe_features:", "expected a 2-D float array")),
    ({"distractor_ids": np.arange(300)}, ("distractor_ids:", "1-D array of strings")),
    ({"probe_train_count": np.zeros(40, dtype=np.float32)}, ("probe_train_count:", "integer array")),
    ({"distractor_features": np.ones((300, 7), dtype=np.float32)}, ("distractor_features:", "embedding size")),
    ({"probe_identity": np.asarray(["a"] * 39)}, ("probe_identity:", "one per id")),
    ({"probe_features": np.where(np.arange(40)[:, None] == 3, np.nan, arrays()["probe_features"])}, ("NaN", "fs/3.png")),
    ({"distractor_features": np.where(np.arange(300)[:, None] == 250, np.inf, arrays()["distractor_features"])},
     ("NaN or infinite", "mf/250.jpg")),
    ({"probe_ids": np.asarray([f"fs/{min(i, 38)}.png" for i in range(40)])}, ("probe_ids:", "more than once", "fs/38.png")),
    ({"distractor_ids": np.asarray(["mf/0.jpg"] * 300)}, ("distractor_ids:", "more than once")),
    ({"distractor_ids": np.asarray(["fs/0.png"] + [f"mf/{i}.jpg" for i in range(1, 300)])}, ("probe ids among the distractors",)),
    ({"distractor_identity": np.asarray(["id1"] + ["other"] * 299)}, ("distractor_identity:", "probe identities", "id1")),
    ({"probe_train_count": np.arange(40)}, ("probe_train_count:", "one training count per identity")),
    ({"meta": np.asarray("[1]")}, ("meta:", "JSON object")),
    ({"extra": np.zeros(3)}, ("extra: unexpected key",)),
])
def test_bad_inputs_are_one_line_errors(tmp_path, changes, needles):
    refused(evaluate("--embeddings", write(tmp_path / "e.npz", **changes)), *needles)


def test_bad_options_and_non_archives(tmp_path):
    emb = write(tmp_path / "e.npz")
    refused(evaluate("--embeddings", emb, "--distractors", 301), "--distractors 301", "1 to 300")
    missing = tmp_path / "s.txt"
    missing.write_text("mf/1.jpg\nnot-there\n")
    refused(evaluate("--embeddings", emb, "--subset", missing), "not-there")
    (tmp_path / "x.npz").write_bytes(b"\x80\x04pickle")
    refused(evaluate("--embeddings", tmp_path / "x.npz"), "not a zip archive")


def test_devkit_feature_files_round_trip(tmp_path):
    a = arrays(d=5)
    n = megaface.write_features(tmp_path / "feat", a["distractor_ids"], a["distractor_features"])
    assert n == 300
    back = np.stack([megaface.read_feature(tmp_path / "feat" / (i + megaface.SUFFIX)) for i in a["distractor_ids"]])
    assert back.dtype == np.float32 and np.array_equal(back, a["distractor_features"])
    raw = (tmp_path / "feat" / ("mf/0.jpg" + megaface.SUFFIX)).read_bytes()
    assert raw[:16] == np.array([5, 1, 4, 5], dtype="<i4").tobytes() and len(raw) == 16 + 20
    (tmp_path / "bad.bin").write_bytes(raw[:20])
    with pytest.raises(Exception, match="expected \\(D, 1, 4, 5\\)"):
        megaface.read_feature(tmp_path / "bad.bin")
    with pytest.raises(Exception, match="relative path"):
        megaface.write_features(tmp_path / "feat", ["../x"], a["distractor_features"][:1])


def test_memory_budget_is_checked_from_the_headers(tmp_path):
    from oltr_bench.errors import OltrError
    from oltr_bench.metrics.embeddings import EmbeddingsFile

    emb = write(tmp_path / "e.npz")
    with EmbeddingsFile(emb, max_bytes=10**6) as f:  # the distractors stream: only one block counts
        assert f.num_distractors == 300
    with pytest.raises(OltrError, match="more than the 1,000 this evaluation may allocate"):
        EmbeddingsFile(emb, max_bytes=1000)

"""Every JSON file a stranger can hand us is read by the checked reader: bad bytes, bad JSON and bad
kinds end in exit status 2 with one message naming the file (and the key), never a traceback."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from oltr_bench.metrics.predictions import write_predictions
from tests.hostile import JSON_ATTACKS, JSON_MESSAGES, refused
from tests.report_fixtures import make_entry, make_run
from tests.tiny_data import make_tiny_split


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    return make_tiny_split(tmp_path_factory.mktemp("tiny"))


def full_predictions(split, path: Path, **kwargs) -> Path:
    ids = split.ids("test") + split.ids("open")
    write_predictions(path, ids=ids, logits=np.zeros((len(ids), split.num_classes), np.float32),
                      split_fingerprint=split.fingerprint, **kwargs)
    return path


# Each reader: (how to plant a hostile file, the CLI call that reads it). The planted path is what the message names.
def split_manifest(tmp_path, tiny, data: bytes):
    split = tmp_path / "split"
    shutil.copytree(tiny.path, split)
    (split / "manifest.json").write_bytes(data)
    preds = full_predictions(tiny, tmp_path / "p.npz")
    return split / "manifest.json", ["evaluate", "--predictions", str(preds), "--splits", str(split), "--json", str(tmp_path / "r.json")]


def results_file(tmp_path, tiny, data: bytes):
    path = tmp_path / "runs" / "results.json"
    path.parent.mkdir()
    path.write_bytes(data)
    return path, ["report", str(path), "--no-leaderboard"]


def run_manifest(tmp_path, tiny, data: bytes):
    run = make_run(tmp_path / "runs")
    (run / "manifest.json").write_bytes(data)
    return run / "manifest.json", ["report", str(tmp_path / "runs"), "--no-leaderboard"]


def entry_validate(tmp_path, tiny, data: bytes):
    path = make_entry(tmp_path / "lb", "e")
    path.write_bytes(data)
    return path, ["leaderboard", "validate", str(path)]


def entry_add(tmp_path, tiny, data: bytes):
    path = make_entry(tmp_path / "mine", "e")
    path.write_bytes(data)
    return path, ["leaderboard", "add", str(path), "--dir", str(tmp_path / "lb")]


READERS = {"split manifest": split_manifest, "results.json": results_file, "run manifest": run_manifest,
           "entry (validate)": entry_validate, "entry (add)": entry_add}


def valid_document(reader: str, tmp_path: Path, tiny) -> dict:
    if reader == "split manifest":
        return json.loads((tiny.path / "manifest.json").read_text())
    if reader == "results.json":
        return json.loads((make_run(tmp_path / "valid") / "results.json").read_text())
    if reader == "run manifest":
        return {"format": "oltr-bench-run/1", "status": "complete", "method": "plain"}
    return json.loads(make_entry(tmp_path / "valid", "v").read_text())


@pytest.mark.parametrize("attack", JSON_ATTACKS)
@pytest.mark.parametrize("reader", READERS)
def test_hostile_json_is_refused_naming_the_file(cli, tmp_path, tiny, reader, attack):
    data = JSON_ATTACKS[attack](valid_document(reader, tmp_path, tiny))
    path, args = READERS[reader](tmp_path, tiny, data)
    message = refused(cli(*args, ok=False), str(path), JSON_MESSAGES[attack])
    assert len(message.strip().splitlines()) <= 2  # one message (validate prefixes a count line)
    assert not (tmp_path / "r.json").exists() and not (tmp_path / "lb").exists() or reader == "entry (validate)"


def test_a_file_larger_than_its_budget_is_refused_before_it_is_read(cli, tmp_path, tiny):
    path = make_entry(tmp_path / "lb", "e")
    with open(path, "r+b") as fh:
        fh.truncate(2**20 + 1)  # sparse: the reader must not read it to know
    refused(cli("leaderboard", "validate", str(path), ok=False), str(path), "1,048,577 bytes, more than the 1,048,576 allowed")


@pytest.mark.parametrize("change, key, expected", [
    ("split manifest", "files", 'files: found "abc", expected an object'),
    ("split manifest", "roots", "roots: found [], expected an object {split: root folder}"),
    ("results.json", "metrics", 'metrics: found ["top1"], expected an object of SPEC.md §3 metrics'),
    ("results.json", "per_class_acc", 'per_class_acc: found {"0": 1}, expected a list of fractions or nulls'),
    ("entry (add)", "name", "name: missing"),
    # Found by the fuzzer: an unhashable value where a protocol name belongs crashed the membership test.
    ("results.json", "protocol", 'protocol: found ["oltr"], expected one of oltr, oltr-2019, oltr-code'),
    ("entry (validate)", "protocol", 'protocol: found ["oltr"], expected one of oltr, oltr-2019, oltr-code'),
])
def test_a_key_of_the_wrong_kind_is_named(cli, tmp_path, tiny, change, key, expected):
    document = valid_document(change, tmp_path, tiny)
    bad_values = {"files": "abc", "roots": [], "metrics": ["top1"], "per_class_acc": {"0": 1}, "protocol": ["oltr"]}
    if key in bad_values:
        document[key] = bad_values[key]
    else:
        del document[key]
    path, args = READERS[change](tmp_path, tiny, json.dumps(document).encode())
    refused(cli(*args, ok=False), str(path), expected)


@pytest.mark.parametrize("meta", ['{"method": [1]', "[1, 2]", '{"a": NaN}', '{"a": 1, "a": 2}', "[" * 50_000 + "]" * 50_000])
def test_hostile_predictions_meta_is_refused(cli, tmp_path, tiny, meta):
    ids = tiny.ids("test") + tiny.ids("open")
    arrays = {"ids": np.asarray(ids), "logits": np.zeros((len(ids), tiny.num_classes), np.float32),
              "split_fingerprint": np.asarray(tiny.fingerprint), "meta": np.asarray(meta)}
    np.savez(tmp_path / "p.npz", **arrays)
    result = cli("evaluate", "--predictions", str(tmp_path / "p.npz"), "--splits", str(tiny.path), "--json", str(tmp_path / "r.json"),
                 ok=False)
    refused(result, "meta")
    assert not (tmp_path / "r.json").exists()


BILLION_LAUGHS = "a: &a [x, x, x, x, x, x, x, x, x, x]\n" + "".join(
    f"{chr(98 + i)}: &{chr(98 + i)} [*{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)}, "
    f"*{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)}]\n" for i in range(8))


def test_a_yaml_bomb_in_a_runs_config_is_refused(cli, tmp_path):
    run = make_run(tmp_path / "runs")
    (run / "config.yaml").write_text(BILLION_LAUGHS)  # 10^9 strings once its aliases are expanded
    refused(cli("report", str(tmp_path / "runs"), "--no-leaderboard", ok=False), str(run / "config.yaml"),
            "aliases (*name) are not accepted")

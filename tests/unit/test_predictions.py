"""Predictions files (SPEC.md §2) and ``evaluate``: every validation error with its message, round
trips, row-order invariance and the results.json contract."""

from __future__ import annotations

import json
import math
import os
import pickle

import numpy as np
import pytest

from oltr_bench.errors import OltrError
from oltr_bench.metrics.evaluate import evaluate, evaluate_file, write_results
from oltr_bench.metrics.predictions import Predictions, load_predictions, write_predictions
from oltr_bench.splits.format import load_split_dir, write_split_dir

COUNTS = [150, 100, 20, 5]  # many, medium (100), medium (20), few under `oltr`


@pytest.fixture(scope="module")
def split(tmp_path_factory):
    """4 classes, 3 test images per class, 5 open images, 2 val images per class."""
    lists = {
        "train": [(f"train/c{c}/{i}.png", c) for c in range(4) for i in range(COUNTS[c])],
        "val": [(f"val/c{c}/{i}.png", c) for c in range(4) for i in range(2)],
        "test": [(f"test/c{c}/{i}.png", c) for c in range(4) for i in range(3)],
        "open": [(f"open/{i}.png", -1) for i in range(5)],
    }
    roots = {name: "images" for name in lists}
    out = tmp_path_factory.mktemp("split") / "tiny"
    write_split_dir(out, dataset="tiny", classes=["a", "b", "c", "d"], lists=lists, roots=roots, source={"kind": "test"})
    return load_split_dir(out)


def split_ids_and_labels(split):
    """The 17 test + open ids, their labels, and logits that make a known, hand-checkable result."""
    ids = split.ids("test") + split.ids("open")
    labels = np.array(split.labels("test") + split.labels("open"))
    return ids, labels


def good_arrays(split):
    ids, labels = split_ids_and_labels(split)
    logits = np.zeros((len(ids), 4), dtype=np.float32)
    known = labels >= 0
    logits[known, labels[known]] = 5.0  # every known sample right: max p = e^5 / (e^5 + 3) = .980
    logits[11, 3] = 3.0  # test/c3/2.png right but less sure: max p = e^3 / (e^3 + 3) = .870
    logits[12, 1] = 4.0  # open/0.png taken for class 1: max p = e^4 / (e^4 + 3) = .948
    return {"ids": np.array(ids), "logits": logits, "split_fingerprint": np.array(split.fingerprint)}


def save(path, arrays):
    np.savez(path, **arrays)
    return path


def check_error(split, tmp_path, arrays, message, **kwargs):
    path = save(tmp_path / "p.npz", arrays)
    with pytest.raises(OltrError) as info:
        evaluate_file(path, split, **kwargs)
    assert message in str(info.value), str(info.value)
    return str(info.value)


# -- valid files -----------------------------------------------------------------------------------

def test_valid_file_scores_by_hand(split, tmp_path):
    results = evaluate_file(save(tmp_path / "p.npz", good_arrays(split)), split)
    m = results["metrics"]
    assert m["top1"] == m["many"] == m["medium"] == m["few"] == 1.0
    # Every row is accepted at τ = .1: open/0.png as class 1 (medium), the other open rows
    # (uniform, max p = 1/4) as class 0 (many, the first of the tied classes).
    assert m["open_accept_rate"] == 1.0 and m["open_absorbed_many"] == 4 / 5 and m["open_absorbed_medium"] == 1 / 5
    # TP 12, FP 0, FN 5: P 1, R 12/17.
    assert m["open_f1"] == pytest.approx(2 * (12 / 17) / (1 + 12 / 17))
    # AUROC: 11 known at .98 beat all 5 open rows; the one at .87 beats the four at .25, not .948.
    assert m["auroc"] == pytest.approx(59 / 60)
    assert results["protocol"] == "oltr" and results["open_threshold"] == 0.1 and results["evaluation_set"] == "test"
    assert results["counts"] == {"known": 12, "open": 5} and results["partial"] is False
    assert results["groups"] == {"many": 1, "medium": 2, "few": 1} and results["train_counts"] == COUNTS
    assert results["per_class_acc"] == [1.0] * 4 and results["split_fingerprint"] == split.fingerprint
    assert set(results["curves"]) == {"open_f1_sweep", "roc", "oscr", "reliability"}


def test_threshold_and_protocol_are_recorded_and_used(split, tmp_path):
    path = save(tmp_path / "p.npz", good_arrays(split))
    r = evaluate_file(path, split, protocol="oltr-code", threshold=0.3)
    assert r["protocol"] == "oltr-code" and r["open_threshold"] == 0.3
    # τ = .3 rejects the four uniform open rows: FN 1 -> F = 2 (12/13) / (1 + 12/13).
    assert r["metrics"]["open_f1"] == pytest.approx(2 * (12 / 13) / (1 + 12 / 13))
    # oltr-code: 100 is many, 20 is few.
    assert r["groups"] == {"many": 2, "medium": 0, "few": 2} and r["metrics"]["medium"] is None


def test_threshold_outside_the_max_softmax_range_is_refused_unless_the_file_has_its_own_score(split, tmp_path):
    arrays = good_arrays(split)
    for tau in (2.0, -0.5):
        check_error(split, tmp_path, arrays, f"--threshold: found {tau!r}; the known score of this file is the max softmax "
                                             "probability, in [0, 1]", threshold=tau)
    # A lab's own known_score may live on any scale: τ = 2 is then a real threshold.
    scored = {**arrays, "known_score": np.linspace(0.0, 4.0, len(arrays["ids"]))}
    assert evaluate_file(save(tmp_path / "k.npz", scored), split, threshold=2.0)["open_threshold"] == 2.0


def test_row_order_does_not_change_the_results(split, tmp_path):
    arrays = good_arrays(split)
    rng = np.random.default_rng(0)
    arrays["logits"] = rng.normal(size=arrays["logits"].shape).astype(np.float32)
    arrays["known_score"] = np.round(rng.random(len(arrays["ids"])), 1)  # ties
    first = evaluate_file(save(tmp_path / "a.npz", arrays), split)
    for seed in range(5):
        order = np.random.default_rng(seed).permutation(len(arrays["ids"]))
        shuffled = {k: (v[order] if v.ndim else v) for k, v in arrays.items()}
        assert evaluate_file(save(tmp_path / "b.npz", shuffled), split) == first


def test_write_load_round_trip(split, tmp_path):
    a = good_arrays(split)
    pred = np.array([-1, 0, 0, -1, 1, 1, -1, 2, 2, -1, 3, 3, -1, -1, -1, -1, 0])
    write_predictions(tmp_path / "p.npz", ids=a["ids"], logits=a["logits"].astype(np.float64), split_fingerprint=split.fingerprint,
                      pred=pred, known_score=np.linspace(0, 1, 17), meta={"method": "mine", "seed": 1})
    p = load_predictions(tmp_path / "p.npz")
    assert p.ids.tolist() == a["ids"].tolist() and p.scores.dtype == np.float64 and not p.scores_are_probs
    assert np.array_equal(p.scores, a["logits"]) and p.pred.tolist() == pred.tolist()
    assert p.meta == {"method": "mine", "seed": 1} and p.split_fingerprint == split.fingerprint
    r = evaluate(p, split)
    assert r["method"] == "mine" and r["open_threshold"] is None  # the method's own decision
    assert r["metrics"]["open_top1"] == pytest.approx(8 / 12)  # known rows 0, 3, 6, 9 rejected
    assert r["metrics"]["open_accept_rate"] == 1 / 5 and r["metrics"]["open_absorbed_many"] == 1.0


def test_probs_are_accepted(split, tmp_path):
    a = good_arrays(split)
    logits = a.pop("logits").astype(np.float64)
    a["probs"] = (np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)).astype(np.float32)
    from_probs = evaluate_file(save(tmp_path / "p.npz", a), split)["metrics"]
    from_logits = evaluate_file(save(tmp_path / "q.npz", good_arrays(split)), split)["metrics"]
    assert from_probs["top1"] == from_logits["top1"] and from_probs["open_f1"] == from_logits["open_f1"]
    assert from_probs["ece"] == pytest.approx(from_logits["ece"], abs=1e-6)


def test_val_set(split, tmp_path):
    ids = split.ids("val")
    logits = np.eye(4, dtype=np.float32)[split.labels("val")] * 5
    write_predictions(tmp_path / "v.npz", ids=ids, logits=logits, split_fingerprint=split.fingerprint)
    r = evaluate_file(tmp_path / "v.npz", split, which="val")
    assert r["evaluation_set"] == "val" and r["counts"] == {"known": 8, "open": 0}
    assert r["metrics"]["top1"] == 1.0 and r["metrics"]["auroc"] is None and r["curves"]["roc"] is None


def test_partial_scores_the_ids_present(split, tmp_path):
    a = good_arrays(split)
    keep = np.r_[0:6, 12:14]  # 6 test and 2 open ids
    a = {"ids": a["ids"][keep], "logits": a["logits"][keep], "split_fingerprint": a["split_fingerprint"]}
    r = evaluate_file(save(tmp_path / "p.npz", a), split, partial=True)
    assert r["partial"] is True and r["counts"] == {"known": 6, "open": 2}
    assert r["metrics"]["top1"] == 1.0 and r["per_class_acc"] == [1.0, 1.0, None, None]


def test_results_file_is_json_and_small(split, tmp_path):
    r = evaluate_file(save(tmp_path / "p.npz", good_arrays(split)), split)
    write_results(tmp_path / "r.json", r)
    assert json.loads((tmp_path / "r.json").read_text()) == r
    assert sorted(p.name for p in tmp_path.iterdir()) == ["p.npz", "r.json"]  # no temporary file left
    for curve in ("open_f1_sweep", "roc", "oscr", "reliability"):
        assert all(len(values) <= 201 for values in r["curves"][curve].values())


def test_written_files_follow_the_umask(split, tmp_path):
    old = os.umask(0o022)
    try:
        write_predictions(tmp_path / "p.npz", **{k: v for k, v in good_arrays(split).items()})
        write_results(tmp_path / "r.json", {"format": "x"})
    finally:
        os.umask(old)
    assert (tmp_path / "p.npz").stat().st_mode & 0o777 == 0o644
    assert (tmp_path / "r.json").stat().st_mode & 0o777 == 0o644


def test_engine_predictions_in_memory_are_validated_too(split):
    a = good_arrays(split)
    logits = a["logits"].copy()
    logits[3, 0] = np.nan
    preds = Predictions(ids=a["ids"], scores=logits, scores_are_probs=False, split_fingerprint=split.fingerprint)
    with pytest.raises(OltrError, match=r"logits: found 1 rows with NaN or infinite values \(first: test/c1/0.png\)"):
        evaluate(preds, split)


# -- every validation error -----------------------------------------------------------------------

def without(arrays, key):
    return {k: v for k, v in arrays.items() if k != key}


def test_missing_file(split, tmp_path):
    with pytest.raises(OltrError, match=r"nope.npz: no such file; expected a predictions .npz"):
        evaluate_file(tmp_path / "nope.npz", split)


def test_not_an_npz(split, tmp_path):
    (tmp_path / "p.npz").write_text("ids,logits\n")
    with pytest.raises(OltrError, match=r"p.npz: found a file that starts with b'ids,lo', not a zip archive; expected a predictions .npz"):
        evaluate_file(tmp_path / "p.npz", split)
    (tmp_path / "p.npz").write_bytes(pickle.dumps({"ids": [1]}))
    with pytest.raises(OltrError, match=r"p.npz: found a file that starts with b'\\x80"):
        evaluate_file(tmp_path / "p.npz", split)
    (tmp_path / "p.npz").write_bytes(b"PK\x03\x04 truncated")
    with pytest.raises(OltrError, match=r"p.npz is not a readable .npz file \(.*\); expected a predictions .npz .* written by numpy.savez"):
        evaluate_file(tmp_path / "p.npz", split)


def test_a_single_npy_array(split, tmp_path):
    np.save(tmp_path / "p.npy", np.zeros(3))
    with pytest.raises(OltrError, match=r"found a single .npy array; expected a predictions .npz"):
        evaluate_file(tmp_path / "p.npy", split)


def test_pickled_objects_are_refused_without_unpickling(split, tmp_path):
    a = good_arrays(split)
    a["ids"] = np.array(a["ids"].tolist(), dtype=object)
    message = check_error(split, tmp_path, a, "ids: found an object array, which would need unpickling")
    assert "allow_pickle=False" in message and "np.asarray(values, dtype=str)" in message
    a = good_arrays(split)
    a["meta"] = np.array({"method": "x"}, dtype=object)  # a dict, pickled inside the archive
    check_error(split, tmp_path, a, "meta: found an object array")


def test_pickle_payload_is_never_executed(split, tmp_path):
    class Boom:
        def __reduce__(self):
            return (exec, ("raise SystemExit('unpickled')",))

    a = good_arrays(split)
    a["ids"] = np.array([Boom()], dtype=object)
    check_error(split, tmp_path, a, "ids: found an object array")  # and no SystemExit: nothing was unpickled


def test_unexpected_key(split, tmp_path):
    a = good_arrays(split)
    a["labels"] = np.zeros(17)
    check_error(split, tmp_path, a, "labels: unexpected key (found keys ['ids', 'labels', 'logits', 'split_fingerprint']); "
                                    "expected only ids, split_fingerprint, logits, probs, pred, known_score, meta")


@pytest.mark.parametrize("key", ["ids", "split_fingerprint"])
def test_missing_required_key(split, tmp_path, key):
    check_error(split, tmp_path, without(good_arrays(split), key), f"{key}: missing (found keys")


def test_logits_and_probs(split, tmp_path):
    a = good_arrays(split)
    check_error(split, tmp_path, without(a, "logits"), "logits/probs: found neither; expected exactly one of the two keys")
    check_error(split, tmp_path, {**a, "probs": a["logits"]}, "logits/probs: found both; expected exactly one")


def test_meta(split, tmp_path):
    a = good_arrays(split)
    check_error(split, tmp_path, {**a, "meta": np.array("{not json")}, "meta: not valid JSON")
    check_error(split, tmp_path, {**a, "meta": np.array("[1, 2]")}, "meta: found a JSON list; expected a JSON object")
    check_error(split, tmp_path, {**a, "meta": np.array([1, 2])}, "meta: found dtype int64 with shape (2,); expected a string scalar")
    # meta.method becomes the results' method name: a string or nothing.
    check_error(split, tmp_path, {**a, "meta": np.array('{"method": {"x": 1}}')},
                "meta.method: found {'x': 1}; expected the method's name as a string")


def test_zip_members_that_are_not_npy_arrays(split, tmp_path):
    """numpy returns raw bytes for such a member instead of failing: the loader must not take them for an array."""
    import zipfile

    with zipfile.ZipFile(tmp_path / "p.npz", "w") as zf:
        for key in ("ids", "logits", "split_fingerprint"):
            zf.writestr(f"{key}.npy", b"garbage")
    with pytest.raises(OltrError, match=r"ids: found a zip member that is not a .npy array"):
        evaluate_file(tmp_path / "p.npz", split)


def test_fingerprint(split, tmp_path):
    a = good_arrays(split)
    message = check_error(split, tmp_path, {**a, "split_fingerprint": np.array("0" * 64)},
                          f"split_fingerprint: found 0000000000000000...; expected {split.fingerprint[:16]}..., the fingerprint of")
    assert "evaluate against the split the predictions were made for" in message
    check_error(split, tmp_path, {**a, "split_fingerprint": np.array([split.fingerprint])},
                "split_fingerprint: found dtype <U64 with shape (1,); expected a string scalar")
    # A value of 16 characters or fewer is shown whole, without a '...' that suggests more.
    for short in ("abc", "", "0123456789abcdef"):
        check_error(split, tmp_path, {**a, "split_fingerprint": np.array(short)},
                    f"split_fingerprint: found {short!r}; expected {split.fingerprint[:16]}..., the fingerprint of")


def test_ids_kind(split, tmp_path):
    a = good_arrays(split)
    check_error(split, tmp_path, {**a, "ids": np.arange(17)},
                "ids: found dtype int64 with shape (17,); expected a 1-D array of strings (np.asarray(ids, dtype=str))")
    check_error(split, tmp_path, {**a, "ids": a["ids"].astype(bytes)}, "ids: found dtype |S")
    check_error(split, tmp_path, {**a, "ids": a["ids"].reshape(1, 17)}, "ids: found dtype <U")


def test_scores_kind_and_shape(split, tmp_path):
    a = good_arrays(split)
    check_error(split, tmp_path, {**a, "logits": a["logits"][:, 0]},
                "logits: found dtype float32 with shape (17,); expected a 2-D float array [N, C]")
    check_error(split, tmp_path, {**a, "logits": a["logits"].astype(np.int64)},
                "logits: found dtype int64 with shape (17, 4); expected a 2-D float array [N, C]")
    check_error(split, tmp_path, {**a, "logits": a["logits"][:16]}, "logits: found 16 rows; expected one per id (17)")
    check_error(split, tmp_path, {**a, "logits": np.zeros((17, 5), np.float32)},
                "logits: found 5 columns; expected 4 (the split's class count)")


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_scores_must_be_finite(split, tmp_path, bad):
    a = good_arrays(split)
    a["logits"][[2, 13], 1] = bad
    check_error(split, tmp_path, a, "logits: found 2 rows with NaN or infinite values (first: test/c0/2.png); expected finite values")


def test_probs_must_be_probabilities(split, tmp_path):
    a = without(good_arrays(split), "logits")
    probs = np.full((17, 4), 0.25, dtype=np.float32)
    probs[5] = [1.2, -0.2, 0.0, 0.0]
    check_error(split, tmp_path, {**a, "probs": probs},
                "probs: found 1 rows with negative values (first: test/c1/2.png); expected probabilities >= 0")
    probs[5] = [0.5, 0.3, 0.3, 0.0]
    check_error(split, tmp_path, {**a, "probs": probs},
                "probs: found 1 rows that do not sum to 1 (worst: test/c1/2.png sums to 1.1); expected rows that sum to 1 within 0.001")
    probs[5] = [0.25, 0.25, 0.25, 0.2505]  # within tolerance
    assert evaluate_file(save(tmp_path / "ok.npz", {**a, "probs": probs}), split)["counts"]["known"] == 12


@pytest.mark.parametrize("excess, accepted", [(2e-3, False), (1.0001e-3, False), (9.999e-4, True), (1e-6, True), (-2e-3, False)])
def test_probs_sum_tolerance_edges(split, tmp_path, excess, accepted):
    """Rows must sum to 1 within PROBS_TOLERANCE = 1e-3 (in float64), no more, no less."""
    a = without(good_arrays(split), "logits")
    probs = np.full((17, 4), 0.25, dtype=np.float64)
    probs[5, 3] += excess
    if accepted:
        assert evaluate_file(save(tmp_path / "ok.npz", {**a, "probs": probs}), split)["counts"]["known"] == 12
    else:
        check_error(split, tmp_path, {**a, "probs": probs},
                    f"probs: found 1 rows that do not sum to 1 (worst: test/c1/2.png sums to {1 + excess:.6g}); "
                    "expected rows that sum to 1 within 0.001")


def test_pred(split, tmp_path):
    a = good_arrays(split)
    check_error(split, tmp_path, {**a, "pred": np.zeros(17)}, "pred: found dtype float64 with shape (17,); expected an integer array of shape (17,)")
    check_error(split, tmp_path, {**a, "pred": np.zeros(16, int)}, "pred: found dtype int64 with shape (16,); expected an integer array")
    pred = np.zeros(17, int)
    pred[[4, 7]] = [4, -2]
    check_error(split, tmp_path, {**a, "pred": pred},
                "pred: found 2 values outside {-1, 0..3} (first: 4 for test/c1/1.png); expected -1 (rejected) or a class index")


def test_known_score(split, tmp_path):
    a = good_arrays(split)
    check_error(split, tmp_path, {**a, "known_score": np.zeros(17, int)}, "known_score: found dtype int64 with shape (17,); expected a float array of shape (17,)")
    ks = np.zeros(17)
    ks[16] = np.nan
    check_error(split, tmp_path, {**a, "known_score": ks}, "known_score: found 1 NaN or infinite values (first: open/4.png); expected finite scores")


def test_duplicate_ids(split, tmp_path):
    a = good_arrays(split)
    a["ids"][16] = a["ids"][0]
    check_error(split, tmp_path, a, "ids: found 1 ids more than once (first: test/c0/0.png); expected each id once")


def test_ids_not_in_the_split(split, tmp_path):
    a = good_arrays(split)
    a["ids"] = a["ids"].astype("<U40")
    a["ids"][3] = "test/c9/0.png"
    check_error(split, tmp_path, a, "ids: found 1 ids that are not in the split's test and open lists (first: test/c9/0.png)")
    # Val ids in a test file are not in the test lists.
    a = good_arrays(split)
    a["ids"][0] = split.ids("val")[0]
    check_error(split, tmp_path, a, "ids: found 1 ids that are not in the split's test and open lists (first: val/c0/0.png)")


def test_missing_ids_are_counted_per_list(split, tmp_path):
    a = good_arrays(split)
    keep = np.r_[0:9, 13:17]  # drops test/c3/0..2.png and open/0.png
    a = {"ids": a["ids"][keep], "logits": a["logits"][keep], "split_fingerprint": a["split_fingerprint"]}
    check_error(split, tmp_path, a, "ids: 3 test ids missing (first: test/c3/0.png); 1 open ids missing (first: open/0.png); "
                                    "expected every id of the evaluation set once (--partial scores a subset)")


def test_partial_with_no_id_of_the_split(split, tmp_path):
    a = good_arrays(split)
    a = {"ids": a["ids"][:0], "logits": a["logits"][:0], "split_fingerprint": a["split_fingerprint"]}
    check_error(split, tmp_path, a, "ids: found none of the split's test ids; expected at least one, even with --partial", partial=True)


def test_bad_evaluation_arguments(split, tmp_path):
    path = save(tmp_path / "p.npz", good_arrays(split))
    with pytest.raises(OltrError, match="evaluation set 'train' is not known; expected 'val' or 'test'"):
        evaluate_file(path, split, which="train")
    with pytest.raises(OltrError, match="unknown protocol 'oltr-2020'; expected one of: oltr, oltr-2019, oltr-code"):
        evaluate_file(path, split, protocol="oltr-2020")
    with pytest.raises(OltrError, match=r"--threshold: found nan; expected a finite number"):
        evaluate_file(path, split, threshold=math.nan)


# -- the command line ------------------------------------------------------------------------------

def test_cli_evaluate_prints_and_writes(cli, split, tmp_path):
    path = save(tmp_path / "p.npz", good_arrays(split))
    out = cli("evaluate", "--predictions", str(path), "--splits", str(split.path), "--protocol", "oltr-2019",
              "--threshold", "0.3", "--method", "mine", "--json", str(tmp_path / "r.json")).output
    r = json.loads((tmp_path / "r.json").read_text())
    assert r["protocol"] == "oltr-2019" and r["open_threshold"] == 0.3 and r["provenance"]["predictions"] == str(path)
    assert r["method"] == "mine"
    assert "mine" in out  # the table above the summary is the report's (oltr_bench.report.tables)
    assert "closed set:    top1 1.000  many 1.000  medium 1.000  few 1.000" in out
    assert "open samples:  open_accept_rate 0.200  open_absorbed_many 0.000  open_absorbed_medium 1.000" in out


def test_cli_bad_file_leaves_no_results(cli, split, tmp_path):
    a = good_arrays(split)
    a["logits"][0, 0] = np.nan
    path = save(tmp_path / "p.npz", a)
    result = cli("evaluate", "--predictions", str(path), "--splits", str(split.path), "--json", str(tmp_path / "r.json"), ok=False)
    assert result.exit_code == 2 and "logits: found 1 rows with NaN" in result.output and "Traceback" not in result.output
    assert not (tmp_path / "r.json").exists()


def test_cli_default_json_never_overwrites_a_run_directorys_results(cli, split, tmp_path, monkeypatch):
    path = save(tmp_path / "p.npz", good_arrays(split))
    run_dir = tmp_path / "runs" / "tiny" / "plain" / "20240101-000000-abcdef12"
    run_dir.mkdir(parents=True)
    (run_dir / "manifest.json").write_text(json.dumps({"format": "oltr-bench-run/1", "status": "running"}))
    monkeypatch.chdir(run_dir)
    args = ("evaluate", "--predictions", str(path), "--splits", str(split.path))
    # An unfinished run: a results.json would mark it complete.
    result = cli(*args, ok=False)
    assert result.exit_code == 2 and "is a run directory" in result.output and "would mark that unfinished run complete" in result.output
    assert not (run_dir / "results.json").exists()
    (run_dir / "results.json").write_text('{"the": "run\'s own"}')
    result = cli(*args, ok=False)
    assert result.exit_code == 2 and "would replace that run's results.json; pass --json PATH" in " ".join(result.output.split())
    assert json.loads((run_dir / "results.json").read_text()) == {"the": "run's own"}
    # Named explicitly, it is replaced on purpose; elsewhere the default is fine.
    cli(*args, "--json", "results.json")
    assert json.loads((run_dir / "results.json").read_text())["dataset"] == "tiny"
    monkeypatch.chdir(tmp_path)
    cli(*args)
    assert json.loads((tmp_path / "results.json").read_text())["dataset"] == "tiny"

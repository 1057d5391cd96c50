"""The CLI path of the walking skeleton: make-splits -> run --quick -> evaluate -> report, and bad input."""

import json
import re

import numpy as np
import pytest

from oltr_bench import __version__
from oltr_bench.metrics.predictions import load_predictions
from tests.conftest import write_tree


def test_quick_run_evaluate_report(cli, embedded_split, tmp_path):
    out = cli("run", "--method", "plain", "--splits", str(embedded_split.path), "--quick", "--no-progress").output
    run_dir = tmp_path / "work" / "runs" / "embedded" / "plain"
    (run,) = list(run_dir.iterdir())
    assert out.strip().splitlines()[-1] == str(run)
    for name in ("config.yaml", "manifest.json", "train_log.jsonl", "results.json", "predictions/val.npz", "predictions/test.npz", "checkpoints/best.pt"):
        assert (run / name).is_file(), name
    manifest = json.loads((run / "manifest.json").read_text())
    assert manifest["status"] == "complete" and manifest["quick"] is True
    assert manifest["split_fingerprint"] == embedded_split.fingerprint
    results = json.loads((run / "results.json").read_text())
    assert results["protocol"] == "oltr" and results["partial"] is True
    assert set(results["metrics"]) >= {"top1", "many", "medium", "few", "open_f1"}
    preds = load_predictions(run / "predictions" / "test.npz")
    assert preds.split_fingerprint == embedded_split.fingerprint
    assert preds.scores.shape[1] == 120

    # A quick run scores a subset: a full evaluation refuses it, --partial scores it.
    bad = cli("evaluate", "--predictions", str(run / "predictions/test.npz"), "--splits", str(embedded_split.path), ok=False)
    assert bad.exit_code == 2 and re.search(r"ids: [\d,]+ test ids missing \(first: U\+", bad.output)
    good = cli("evaluate", "--predictions", str(run / "predictions/test.npz"), "--splits", str(embedded_split.path),
               "--partial", "--json", str(tmp_path / "r.json"))
    again = json.loads((tmp_path / "r.json").read_text())
    assert again["metrics"] == results["metrics"]
    assert "| plain (quick) |" in good.output

    report = cli("report", str(tmp_path / "work" / "runs")).output
    assert "### embedded — protocol `oltr`" in report and "| plain (quick) |" in report


def test_full_predictions_evaluate_exactly(cli, embedded_split, tmp_path):
    """A predictions file covering every test and open id evaluates with known values."""
    from oltr_bench.metrics.predictions import write_predictions

    ids = embedded_split.ids("test") + embedded_split.ids("open")
    labels = np.array(embedded_split.labels("test") + [-1] * len(embedded_split.ids("open")))
    logits = np.zeros((len(ids), 120), dtype=np.float32)
    known = labels >= 0
    logits[known, labels[known]] = 10.0  # every known sample right and confident
    path = tmp_path / "p.npz"
    order = np.random.default_rng(0).permutation(len(ids))  # any order is accepted
    write_predictions(path, ids=np.array(ids)[order], logits=logits[order], split_fingerprint=embedded_split.fingerprint)
    cli("evaluate", "--predictions", str(path), "--splits", str(embedded_split.path), "--json", str(tmp_path / "r.json"))
    metrics = json.loads((tmp_path / "r.json").read_text())["metrics"]
    assert metrics["top1"] == metrics["many"] == metrics["medium"] == metrics["few"] == 1.0
    # Open samples have uniform scores (max 1/120 < 0.1): all rejected, so F = 1.
    assert metrics["open_f1"] == 1.0 and metrics["open_accept_rate"] == 0.0


def test_version_and_help(cli):
    assert cli("--version").output.strip() == f"oltr-bench, version {__version__}"
    text = cli("--help").output
    for command in ("make-splits", "run", "evaluate", "report", "datasets", "methods", "demo", "embed", "evaluate-faces"):
        assert command in text
        assert "Example" in cli(command, "--help").output


def test_listings_come_from_the_registry(cli):
    assert re.search(r"^plain\s+Stage-1 plain model", cli("methods").output, re.M)
    text = cli("datasets").output
    assert "embedded:" in text and "folder:" in text and "needs:" in text


@pytest.mark.parametrize(
    "args, message",
    [
        (("run", "--method", "nope", "--quick"), "unknown method 'nope'; expected one of:"),
        (("run", "--method", "plain", "--quick"), "no split directory for dataset 'embedded'"),
        (("run", "--method", "plain", "--dataset", "x", "--splits", "y"), "either --dataset NAME or --splits DIR"),
        (("make-splits", "--dataset", "nope"), "unknown dataset 'nope'"),
        (("make-splits", "--dataset", "folder"), "needs --root DIR"),
        (("make-splits", "--dataset", "folder", "--root", "/does/not/exist"), "does not exist or is not a directory"),
        (("make-splits", "--root", "/tmp"), "dataset 'embedded' does not use --root"),
        (("make-splits", "--dataset", "ms1m", "--alpha", "2"), "dataset 'ms1m_lt' does not use --alpha; it accepts:"),
        (("report", "/does/not/exist"), "does not exist; expected a run directory"),
        (("evaluate", "--predictions", "nope.npz", "--splits", "."), "is not a split directory"),
    ],
)
def test_bad_input_fails_with_a_clear_message(cli, args, message):
    result = cli(*args, ok=False)
    assert result.exit_code == 2
    assert message in result.output
    assert "Traceback" not in result.output


def test_run_with_bad_override_fails_before_training(cli, embedded_split):
    result = cli("run", "--method", "plain", "--splits", str(embedded_split.path), "--set", "train.epoch=1", ok=False)
    assert result.exit_code == 2 and "unknown key 'train.epoch'" in result.output


def test_folder_dataset_end_to_end(cli, tmp_path):
    write_tree(tmp_path / "imgs", {f"class{i}": 30 + 10 * i for i in range(6)})
    out = cli("make-splits", "--dataset", "folder", "--root", str(tmp_path / "imgs"), "--open-classes", "2",
              "--val-per-class", "3", "--test-per-class", "5", "--alpha", "6", "--max", "20", "--min", "2").output
    split_dir = out.strip().splitlines()[-1]
    manifest = json.loads((tmp_path / "work" / "splits" / "imgs" / "manifest.json").read_text())
    assert split_dir.endswith("imgs") and manifest["num_classes"] == 4 and manifest["prefix"] == "Imgs_LT"
    assert sorted(manifest["train_counts"], reverse=True)[0] == 20
    assert manifest["files"]["test"]["lines"] == 20 and manifest["files"]["val"]["lines"] == 12
    assert len(manifest["source"]["open_classes"]) == 2


def test_help_texts_describe_what_the_commands_do(cli):
    evaluate = " ".join(cli("evaluate", "--help").output.split())
    assert "every test and open id of the split exactly once" not in evaluate
    assert "every id of the evaluation set exactly once" in evaluate
    assert "the val ids for --set val" in evaluate and "with --partial, at least one of them, each at most once" in evaluate
    make = " ".join(cli("make-splits", "--help").output.split())
    assert "(they are counted in the manifest)" not in make
    assert "imported lists are kept whole (the manifest counts the missing images)" in make
    assert "a generated test list leaves out the validation images that are missing" in make

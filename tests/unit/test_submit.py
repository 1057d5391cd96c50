"""`leaderboard submit` -> `leaderboard verify`: a predictions file becomes a verified entry, and the
command the shipped CI workflow runs re-scores it and catches tampered predictions or entries."""

import json
import shlex
import shutil
from pathlib import Path

import numpy as np
import pytest
import yaml

from oltr_bench.metrics.evaluate import evaluate
from oltr_bench.metrics.predictions import load_predictions, write_predictions
from oltr_bench.report import entries as lb
from oltr_bench.utils.io import sha256_file
from tests.report_fixtures import list_split, random_logits, scored_run_dir


@pytest.fixture
def repo(tmp_path, monkeypatch):
    """A leaderboard repository as the workflow expects it (leaderboard/, splits/<dataset>/), whose
    toy_lt split is declared canonical, and a predictions file for that split."""
    split = list_split(tmp_path / "repo" / "splits")
    monkeypatch.setattr(lb, "canonical_fingerprint", lambda dataset: split.fingerprint if dataset == "toy_lt" else None)
    ids, logits = random_logits(split)
    write_predictions(tmp_path / "mine.npz", ids=ids, logits=logits, split_fingerprint=split.fingerprint, meta={"model": "tiny"})
    return tmp_path / "repo", split


def workflow_commands(cli) -> list[list[str]]:
    """The oltr-bench commands of the workflow `leaderboard workflow` prints, as argument lists."""
    workflow = yaml.safe_load(cli("leaderboard", "workflow").output)
    steps = workflow["jobs"]["verify"]["steps"]
    commands = [shlex.split(step["run"]) for step in steps if step.get("run", "").startswith("oltr-bench ")]
    assert [c[:3] for c in commands] == [["oltr-bench", "leaderboard", "validate"], ["oltr-bench", "leaderboard", "verify"]]
    return [c[1:] for c in commands]


def run_workflow(cli, repo: Path, monkeypatch, ok: bool = True):
    """The workflow's commands in the repository, stopping at the first that fails (as a CI job does)."""
    monkeypatch.chdir(repo)
    for command in workflow_commands(cli):
        result = cli(*command, ok=ok)
        if result.exit_code != 0:
            return result
    return result


def submit(cli, repo: Path, *extra: str, ok: bool = True):
    return cli("leaderboard", "submit", str(repo.parent / "mine.npz"), "--dataset", "toy_lt", "--name", "Mine",
               "--method", "mine", "--paper-url", "https://example.org/mine", "--backbone", "resnet10", "--epochs", "90",
               "--splits", str(repo / "splits" / "toy_lt"), "--dir", str(repo / "leaderboard"), *extra, ok=ok)


def test_submit_writes_a_verified_entry_with_a_copy_of_its_predictions(cli, repo):
    root, split = repo
    path = Path(submit(cli, root).output.strip().splitlines()[-1])
    entry = json.loads(path.read_text())
    expected = evaluate(load_predictions(root.parent / "mine.npz"), split, method="mine")
    digest = sha256_file(root.parent / "mine.npz")
    assert path == root / "leaderboard" / "toy_lt" / "mine.json" and lb.entry_errors(entry) == []
    assert (entry["name"], entry["method"], entry["source"], entry["verified"], entry["protocol"]) == ("Mine", "mine", "reproduced", True, "oltr")
    assert (entry["backbone"], entry["epochs"], entry["paper"], entry["open_threshold"]) == ("resnet10", 90, {"url": "https://example.org/mine"}, 0.1)
    assert entry["metrics"] == {k: v for k, v in expected["metrics"].items()}
    assert entry["verification"]["predictions_sha256"] == [digest] and entry["verification"]["split_fingerprint"] == split.fingerprint
    assert entry["verification"]["predictions"] == [f"predictions/{digest[:16]}.npz"]
    assert sha256_file(path.parent / "predictions" / f"{digest[:16]}.npz") == digest
    assert entry["provenance"] == {"predictions_meta": {"model": "tiny"}}
    # The same predictions twice are refused; another protocol of other predictions is another entry.
    again = submit(cli, root, ok=False)
    assert again.exit_code == 2 and "already holds an entry verified from these predictions" in again.output


def test_submit_refuses_what_could_not_be_verified(cli, repo, tmp_path):
    root, split = repo
    other = list_split(tmp_path / "other", test_per_class=5)  # another toy_lt split: not the canonical one
    result = cli("leaderboard", "submit", str(tmp_path / "mine.npz"), "--dataset", "toy_lt", "--name", "X", "--method", "x",
                 "--splits", str(other.path), "--dir", str(tmp_path / "lb"), ok=False)
    assert result.exit_code == 2 and "expected the canonical toy_lt split" in result.output
    result = cli("leaderboard", "submit", str(tmp_path / "mine.npz"), "--dataset", "places_lt", "--name", "X", "--method", "x",
                 "--splits", str(split.path), "--dir", str(tmp_path / "lb"), ok=False)
    assert result.exit_code == 2 and "a split of 'toy_lt', expected one of --dataset 'places_lt'" in result.output
    result = cli("leaderboard", "submit", str(tmp_path / "mine.npz"), "--dataset", "toy_lt", "--name", "X", ok=False)
    assert result.exit_code == 2 and "Missing option '--method'" in result.output
    assert not (tmp_path / "lb").exists()


def test_the_ci_workflow_verifies_the_submission_and_catches_tampering(cli, repo, monkeypatch):
    root, _ = repo
    entry_path = Path(submit(cli, root).output.strip().splitlines()[-1])
    out = run_workflow(cli, root, monkeypatch).output
    assert f"{Path('leaderboard') / 'toy_lt' / 'mine.json'}: verified (1 predictions file re-scored, every metric agrees)" in out
    assert "1 verified entries re-scored, 0 skipped (predictions not present), 0 not verified" in out
    # Predictions replaced after verification: the digest no longer matches.
    stored = entry_path.parent / json.loads(entry_path.read_text())["verification"]["predictions"][0]
    preds = load_predictions(stored)
    original = stored.read_bytes()
    write_predictions(stored, ids=preds.ids, logits=np.roll(preds.scores, 1, axis=1), split_fingerprint=preds.split_fingerprint)
    result = run_workflow(cli, root, monkeypatch, ok=False)
    assert result.exit_code == 2 and "verification.predictions_sha256[0]: found" in result.output  # validate catches it first
    monkeypatch.chdir(root)
    result = cli("leaderboard", "verify", "leaderboard", "--splits", "splits", ok=False)
    assert result.exit_code == 2 and "the file changed since it was verified" in result.output
    # Predictions and digest both replaced (a forged entry): re-scoring gives other numbers.
    entry = json.loads(entry_path.read_text())
    entry["verification"]["predictions_sha256"] = [sha256_file(stored)]
    entry_path.write_text(json.dumps(entry))
    result = cli("leaderboard", "verify", "leaderboard", "--splits", "splits", ok=False)
    assert result.exit_code == 2 and "1 of 1 entries failed verification" in result.output
    assert "recomputed from its predictions: top1: claimed" in result.output
    # Restored, then gone: skipped, or a failure for the CI (--require-predictions).
    stored.write_bytes(original)
    entry["verification"]["predictions_sha256"] = [sha256_file(stored)]
    entry_path.write_text(json.dumps(entry))
    assert "1 verified entries re-scored" in cli("leaderboard", "verify", "leaderboard", "--splits", "splits").output
    stored.unlink()
    out = cli("leaderboard", "verify", "leaderboard", "--splits", "splits").output
    assert "mine.json: skipped (predictions not present:" in out and "0 verified entries re-scored, 1 skipped" in out
    result = run_workflow(cli, root, monkeypatch, ok=False)
    assert result.exit_code == 2 and "predictions not present" in result.output


def test_verify_re_scores_an_entry_of_several_seeds_and_its_claims(cli, repo, tmp_path, monkeypatch):
    root, split = repo
    # The runs live inside the entry's folder, so the entry can name their predictions (paths
    # outside it are never recorded: an entry cannot point a verifier anywhere else).
    runs = [scored_run_dir(root / "leaderboard" / "toy_lt" / "runs", split, seed=seed)[0] for seed in (0, 1)]
    path = Path(cli("leaderboard", "add", *map(str, runs), "--dir", str(root / "leaderboard"), "--name", "plain, 2 seeds").output.strip().splitlines()[-1])
    entry = json.loads(path.read_text())
    assert entry["verified"] is True and [r["seed"] for r in entry["provenance"]["runs"]] == [0, 1]
    monkeypatch.chdir(root)
    assert "1 verified entries re-scored" in cli("leaderboard", "verify", "leaderboard", "--splits", "splits").output
    for key, change in (("metrics", 0.001), ("metrics_std", 0.001)):
        forged = json.loads(json.dumps(entry))
        forged[key]["few"] += change
        path.write_text(json.dumps(forged))
        result = cli("leaderboard", "verify", "leaderboard", "--splits", "splits", ok=False)
        prefix = "metrics_std.few" if key == "metrics_std" else "few"
        assert result.exit_code == 2 and f"recomputed from its predictions: {prefix}: claimed" in result.output
    # Without a canonical split to re-score with, a present predictions file cannot pass.
    path.write_text(json.dumps(entry))
    shutil.rmtree(root / "splits")
    result = cli("leaderboard", "verify", "leaderboard", ok=False)
    assert result.exit_code == 2 and "no canonical toy_lt split was given to re-score it with" in result.output


def test_the_workflow_is_shipped_and_names_the_installed_version(cli):
    from oltr_bench import __version__

    text = cli("leaderboard", "workflow").output
    assert f'"oltr-bench=={__version__}"' in text and "pull_request:" in text and "lfs: true" in text
    assert ".github/workflows/verify-leaderboard.yml" in text


def test_verify_names_entries_it_cannot_read(cli, tmp_path):
    (tmp_path / "lb" / "toy_lt").mkdir(parents=True)
    (tmp_path / "lb" / "toy_lt" / "broken.json").write_text("{not json")
    result = cli("leaderboard", "verify", str(tmp_path / "lb"), ok=False)
    assert result.exit_code == 2 and "broken.json: not valid JSON" in result.output and "1 of 1 entries failed" in result.output

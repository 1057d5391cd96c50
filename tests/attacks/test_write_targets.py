"""Unwritable or full targets: one-line error, no temporary file left, a run marked failed and resumable."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from oltr_bench.formats.rundir import RunDir
from oltr_bench.metrics.predictions import write_predictions
from tests.checkout import ROOT
from tests.hostile import refused, temporaries
from tests.report_fixtures import make_run
from tests.tiny_data import TINY, make_tiny_split


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    return make_tiny_split(tmp_path_factory.mktemp("tiny"))


@pytest.fixture
def predictions(tiny, tmp_path) -> Path:
    ids = tiny.ids("test") + tiny.ids("open")
    path = tmp_path / "p.npz"
    write_predictions(path, ids=ids, logits=np.zeros((len(ids), tiny.num_classes), np.float32), split_fingerprint=tiny.fingerprint)
    return path


def test_evaluate_json_that_is_a_directory(cli, tiny, tmp_path, predictions):
    (tmp_path / "out").mkdir()
    refused(cli("evaluate", "--predictions", str(predictions), "--splits", str(tiny.path), "--json", str(tmp_path / "out"), ok=False),
            f"cannot write {tmp_path / 'out'}: it is a directory, expected a file name")
    assert temporaries(tmp_path) == [] and list((tmp_path / "out").iterdir()) == []


def test_evaluate_json_under_a_file(cli, tiny, tmp_path, predictions):
    (tmp_path / "file").write_text("x")
    refused(cli("evaluate", "--predictions", str(predictions), "--splits", str(tiny.path), "--json", str(tmp_path / "file" / "r.json"),
                ok=False), "cannot write", "a part of the path is a file, not a folder")


def test_report_output_and_site_targets(cli, tmp_path):
    make_run(tmp_path / "runs")
    (tmp_path / "dir").mkdir()
    refused(cli("report", str(tmp_path / "runs"), "--no-leaderboard", "--output", str(tmp_path / "dir"), ok=False),
            "it is a directory, expected a file name")
    (tmp_path / "file").write_text("x")
    refused(cli("report", str(tmp_path / "runs"), "--no-leaderboard", "--html", str(tmp_path / "file" / "site"), "--no-plots", ok=False),
            "cannot write", "a part of the path is a file, not a folder")
    assert temporaries(tmp_path) == []


def test_leaderboard_add_dir_that_is_a_file(cli, tmp_path):
    run = make_run(tmp_path / "runs")
    (tmp_path / "lb").write_text("not a folder")
    refused(cli("leaderboard", "add", str(run), "--dir", str(tmp_path / "lb"), ok=False),
            "cannot write", "a part of the path is a file, not a folder")


def run_limited(args: list[str], limit: int | None, env: dict[str, str]) -> subprocess.CompletedProcess:
    """``python -m oltr_bench ARGS`` with files capped at ``limit`` bytes (RLIMIT_FSIZE: a full disk for big files)."""
    code = ("import resource, sys, runpy\n"
            f"limit = {limit!r}\n"
            "if limit is not None:\n"
            "    resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))\n"
            "sys.argv = ['oltr-bench', *sys.argv[1:]]\n"
            "runpy.run_module('oltr_bench', run_name='__main__')\n")
    return subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, cwd=ROOT, env={**os.environ, **env},
                          timeout=600)


@pytest.mark.slow
def test_a_full_disk_fails_the_run_cleanly_and_resume_finishes_it(tiny, tmp_path):
    args = ["run", "--method", "plain", "--splits", str(tiny.path), "--out", str(tmp_path / "runs"), "--no-progress",
            *[a for item in (*TINY, "train.epochs=2") for a in ("--set", item)]]
    # Checkpoints are the largest files: with files capped below their size, writing the first one fails.
    full = run_limited(args, 20_000, {})
    assert full.returncode == 2 and "Traceback" not in full.stderr, full.stderr
    assert "cannot write" in full.stderr and "the file is larger than this process may write" in full.stderr
    assert "is marked failed; run the same command with --resume" in full.stderr
    (run,) = (tmp_path / "runs" / "tiny" / "plain").iterdir()
    assert json.loads((run / "manifest.json").read_text())["status"] == "failed"
    assert not (run / "results.json").exists() and temporaries(run) == []
    again = run_limited([*args, "--resume"], None, {})
    assert again.returncode == 0, again.stderr
    assert Path(again.stdout.strip().splitlines()[-1]) == run and RunDir(run).is_complete


@pytest.mark.slow
def test_a_full_disk_while_evaluating_leaves_nothing(tiny, tmp_path, predictions):
    result = run_limited(["evaluate", "--predictions", str(predictions), "--splits", str(tiny.path), "--json", str(tmp_path / "r.json")],
                         100, {})
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert f"cannot write {tmp_path / 'r.json'}: the file is larger than this process may write" in result.stderr
    assert not (tmp_path / "r.json").exists() and temporaries(tmp_path) == []

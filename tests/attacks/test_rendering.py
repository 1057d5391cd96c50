"""What strangers' names and numbers can do to our output: nothing. Markdown is escaped like HTML,
and absurd values are refused when the file is read, not rendered."""

from __future__ import annotations

import json

import pytest

from tests.hostile import refused
from tests.report_fixtures import make_entry, make_run

HOSTILE_NAME = "<script>alert(1)</script> | [x](javascript:alert(2)) `code` *bold*"


def test_markdown_tables_escape_names_from_results(cli, tmp_path):
    make_run(tmp_path / "runs", method=HOSTILE_NAME)
    out = cli("report", str(tmp_path / "runs"), "--no-leaderboard").stdout
    rows = [line for line in out.splitlines() if "alert(1)" in line]
    assert rows, out
    for line in rows:
        assert "<script>" not in line and "[x](" not in line and " `code`" not in line
        assert "&lt;script&gt;" in line and "\\|" in line and "\\[x\\]" in line
        header = next(l for l in out.splitlines() if l.startswith("| Method"))
        unescaped_pipes = line.replace("\\|", "").count("|")
        assert unescaped_pipes == header.count("|")  # the name did not add a column


def test_markdown_tables_escape_entry_fields(cli, tmp_path):
    make_entry(tmp_path / "lb", "evil", name=HOSTILE_NAME, backbone="<img src=x onerror=alert(3)>")
    out = cli("report", str(tmp_path / "lb" / "toy_lt" / "evil.json"), "--no-leaderboard").stdout
    assert "<img" not in out and "&lt;img src=x onerror=alert(3)&gt;" in out and "<script>" not in out


@pytest.mark.parametrize("field, value, expected", [
    ("other_metrics", {"MegaFace rank-1": 1e308}, "other_metrics.MegaFace rank-1: found 1e+308, expected a number between -1e+06 and 1e+06"),
    ("metrics_std", {"top1": 1e308}, "metrics_std.top1: found 1e+308, expected a standard deviation in [0, 1]"),
    ("epochs", 10**30, "epochs: found 1000000000000000000000000000000, expected an integer in 0..100,000 or null"),
    ("seeds", [2**70], "seeds: found [1180591620717411303424], expected a list of non-negative integer seeds"),
    ("name", "x" * 5000, "name: found \"xxxx"),
    ("notes", "x" * 20000, "notes: found \"xxxx"),
])
def test_absurd_entry_values_are_refused_at_validation(cli, tmp_path, field, value, expected):
    path = make_entry(tmp_path / "lb", "e", **{field: value})
    refused(cli("leaderboard", "validate", str(path), ok=False), expected)


@pytest.mark.parametrize("metrics, expected", [
    ({"top1": 1e308}, "metrics: found {\"top1\": 1e+308}, expected an object of SPEC.md §3 metrics, each a fraction in [0, 1] or null"),
    ({"top1": -0.5}, "expected an object of SPEC.md §3 metrics"),
    ({"top1": "0.5"}, "expected an object of SPEC.md §3 metrics"),
])
def test_absurd_result_values_are_refused_when_read(cli, tmp_path, metrics, expected):
    run = make_run(tmp_path / "runs")
    results = json.loads((run / "results.json").read_text())
    results["metrics"] = metrics
    (run / "results.json").write_text(json.dumps(results))
    refused(cli("report", str(tmp_path / "runs"), "--no-leaderboard", ok=False), str(run / "results.json"), expected)

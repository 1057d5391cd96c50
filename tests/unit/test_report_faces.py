"""Face results (SPEC.md §6) in reports: the Markdown face table and the site's face section with its inline CMC SVG."""

from __future__ import annotations

import json

from oltr_bench.formats import FACE_RESULTS
from oltr_bench.report.faces import cmc_svg, face_rows, markdown


def result(method, rank1, run):
    cmc = [min(1.0, rank1 + 0.02 * k) for k in range(10)]
    return {"format": FACE_RESULTS, "dataset": "embedded", "method": method, "protocol": "heldout",
            "metrics": {"rank1": rank1, "cmc": cmc, "rank1_many": 0.9, "rank1_medium": 0.5, "rank1_few": None,
                        "rank1_one": None, "rank1_zero": 0.25, "tar_at_far": {"1e-06": None, "1e-05": None, "1e-04": 0.3, "1e-03": 0.625}},
            "groups": {}, "distractors": 360, "counts": {"probes": 10, "pairs": 20},
            "provenance": {"embedding": "meta_embedding" if method == "dme" else "penultimate", "meta": {"run_id": run}}}


def test_markdown_table_and_svg():
    rows = face_rows([result("plain", 0.5, "r1"), result("dme", 0.75, "r2")])
    assert [r.method for r in rows] == ["dme", "plain"]  # best rank-1 first
    text = markdown(rows)
    assert "### embedded — face identification (heldout; SPEC.md §6)" in text
    assert "| dme (r2) | unrecorded | meta_embedding | 360 | 0.7500 | 0.9000 | 0.5000 | – | – | 0.2500 | 0.8300 | 0.9300 | 0.6250 | reproduced |" in text
    assert "| 75.00 |" in markdown(rows, percent=True)
    svg = cmc_svg(rows)
    assert svg.startswith("<svg") and svg.count("<polyline") == 2 and "dme (r2)" in svg and "http://" not in svg.replace(
        'xmlns="http://www.w3.org/2000/svg"', "")


def test_report_finds_face_results_and_shows_their_runs_profile(tmp_path, cli):
    run = tmp_path / "runs" / "embedded" / "dme" / "r2"
    run.mkdir(parents=True)
    (run / "face_results.json").write_text(json.dumps(result("dme", 0.75, "r2")))
    (run / "config.yaml").write_text("method: dme\nprofile: fast\n")  # the run's config: its profile
    loose = tmp_path / "runs" / "elsewhere"  # scored outside a run directory: no profile to show
    loose.mkdir()
    (loose / "face_results.json").write_text(json.dumps(result("plain", 0.5, "r1")))
    out = cli("report", str(tmp_path / "runs"), "--no-leaderboard").output
    assert "face identification (heldout" in out and "| dme (r2) | fast | meta_embedding |" in out
    assert "| plain (r1) | unrecorded | penultimate |" in out
    cli("report", str(tmp_path / "runs"), "--no-leaderboard", "--html", str(tmp_path / "site"), "--no-plots")
    page = (tmp_path / "site" / "embedded" / "index.html").read_text()
    assert 'class="cmc-plot"' in page and "Face identification" in page
    assert "<td class=\"name\">dme (r2)</td><td>fast</td>" in page

"""Report tables: seed aggregation, row descriptions, protocols, Markdown/CSV/LaTeX, reported vs reproduced."""

import csv
import io
import json
import statistics
from pathlib import Path

import pytest

from oltr_bench.report.collect import collect
from oltr_bench.report.compare import reported_vs_reproduced
from oltr_bench.report.rows import build_rows, rows_for_tables
from oltr_bench.report.site import build_site
from oltr_bench.report.tables import csv_table, latex_escape, latex_tables, markdown, markdown_tables, md_escape
from tests.report_fixtures import make_entry, make_run, scored_run_dir


def rows_of(*paths, leaderboard=()):
    return build_rows(collect(list(paths), leaderboard_dirs=list(leaderboard)))


def line_of(text, name):
    (line,) = [l for l in text.splitlines() if l.startswith(f"| {md_escape(name)} |")]
    return [c.strip() for c in line.strip("|").split("|")]


def test_seeds_of_one_config_are_averaged_and_other_configs_stay_apart(tmp_path):
    for seed, top1 in ((0, 0.30), (1, 0.32), (2, 0.34)):
        make_run(tmp_path, seed=seed, metrics={"top1": top1, "many": 0.5, "few": None, "open_f1": 0.1 * (seed + 1)})
    make_run(tmp_path, seed=0, lr=0.05, metrics={"top1": 0.9})
    rows = rows_of(tmp_path)
    assert len(rows) == 2
    agg = next(r for r in rows if len(r.runs) == 3)
    assert agg.seeds == [0, 1, 2] and agg.n_seeds == 3
    assert agg.metrics["top1"] == pytest.approx(0.32, abs=1e-12)
    assert agg.std["top1"] == pytest.approx(statistics.stdev([0.30, 0.32, 0.34]), abs=1e-12)
    assert agg.std["many"] == 0.0 and agg.metrics["few"] is None and agg.std["few"] is None
    assert agg.metrics["open_f1"] == pytest.approx(0.2) and agg.std["open_f1"] == pytest.approx(0.1)
    text = markdown_tables(rows)
    # Two configurations of one method in one table are told apart by their config hash.
    names = [l.split("|")[1].strip() for l in text.splitlines() if l.startswith("| plain \\[")]
    assert len(names) == 2 and len(set(names)) == 2
    cells = line_of(text, agg.name)
    assert cells[7] == "3"  # Seeds column
    assert cells[8] == "standard"  # Profile column: a config written before profiles existed is standard
    assert cells[12] == "0.320 ± 0.020"  # Top-1: mean ± sample std
    assert cells[11] == "–"  # Few is null in every seed


def test_runs_that_repeat_a_seed_are_one_seed(cli, tmp_path):
    import shutil

    first = make_run(tmp_path / "runs", seed=0, metrics={"top1": 0.30, "open_f1": 0.2})
    again = first.with_name(first.name + "-again")  # the same config and seed, run twice
    shutil.copytree(first, again)
    results = json.loads((again / "results.json").read_text())
    results["metrics"]["top1"] = 0.34
    (again / "results.json").write_text(json.dumps(results))
    (row,) = rows_of(tmp_path / "runs")
    assert (row.seeds, row.n_seeds, row.repeats, len(row.runs)) == ([0], 1, 1, 2)
    assert row.metrics["top1"] == pytest.approx(0.32) and row.std == {}  # no ± 0.000 from one seed
    cells = line_of(markdown_tables([row]), "plain")
    assert cells[7] == "1 (2 runs)" and cells[12] == "0.320"
    # A third run with another seed: two seeds, the std over the seeds' values (0.32 and 0.40).
    make_run(tmp_path / "runs", seed=1, metrics={"top1": 0.40, "open_f1": 0.2})
    (row,) = rows_of(tmp_path / "runs")
    assert (row.seeds, row.n_seeds) == ([0, 1], 2)
    assert row.metrics["top1"] == pytest.approx(0.36) and row.std["top1"] == pytest.approx(statistics.stdev([0.32, 0.40]))
    out = cli("leaderboard", "add", str(first), str(again), "--dir", str(tmp_path / "lb")).output
    entry = json.loads(Path(out.strip().splitlines()[-1]).read_text())
    assert entry["seeds"] == [0] and "metrics_std" not in entry and len(entry["provenance"]["runs"]) == 2


def test_rows_describe_backbone_pretraining_epochs_and_source(tmp_path):
    stage1 = make_run(tmp_path / "runs", method="plain", epochs=30)
    make_run(tmp_path / "runs", method="dme", epochs=60, backbone="resnet152", stage1_run=stage1)
    make_entry(tmp_path / "lb", "paper-dme", method="dme", name="DME (paper)", epochs=90, pretraining="imagenet")
    text = markdown_tables(rows_of(tmp_path / "runs", leaderboard=[tmp_path / "lb"]))
    assert line_of(text, "dme")[:8] == ["dme", "resnet152", "none", "no", "90", "reproduced", "0.1", "1"]
    assert line_of(text, "DME (paper)")[:8] == ["DME (paper)", "resnet10", "imagenet", "no", "90", "reported", "0.1", "–"]


def test_one_table_per_dataset_and_protocol_with_the_protocol_in_the_title(tmp_path):
    make_run(tmp_path, protocol="oltr")
    make_run(tmp_path, protocol="oltr-code", seed=1)
    make_run(tmp_path, dataset="other_lt", threshold=None)
    text = markdown_tables(rows_of(tmp_path))
    titles = [l for l in text.splitlines() if l.startswith("### ")]
    assert titles == [
        "### other_lt — protocol `oltr` (many > 100, few < 20; rejected known samples are F-measure false positives)",
        "### toy_lt — protocol `oltr` (many > 100, few < 20; rejected known samples are F-measure false positives)",
        "### toy_lt — protocol `oltr-code` (OLTR repository since Aug 2019: many >= 100, few <= 20)",
    ]
    other = text.split("### other_lt")[1].split("###")[0]
    assert "| plain | resnet10 | none | no | 30 | reproduced | own |" in other


def test_quick_results_are_labelled(tmp_path):
    make_run(tmp_path, partial=True)
    text = markdown_tables(rows_of(tmp_path))
    assert "| plain (quick) |" in text and "never a valid result" in text


def test_markdown_from_results_dicts_as_evaluate_prints_them(tmp_path):
    run = make_run(tmp_path, metrics={"top1": 0.25, "open_f1": 0.125})
    results = json.loads((run / "results.json").read_text())
    results["_path"] = "results.json"
    assert line_of(markdown([results]), "plain")[12:14] == ["0.250", "0.125"]


def test_csv_round_trips_every_metric_and_its_std(tmp_path):
    for seed, auroc in ((0, 0.8), (1, 0.9)):
        make_run(tmp_path, seed=seed, metrics={"top1": 0.5, "auroc": auroc, "fpr95": 0.25})
    make_entry(tmp_path / "lb", "p", name='Name, with "quotes"', metrics={"open_f1": 0.474})
    rows = list(csv.DictReader(io.StringIO(csv_table(rows_of(tmp_path / "toy_lt", tmp_path / "lb")))))
    run, entry = sorted(rows, key=lambda r: r["source"], reverse=True)
    assert run["seeds"] == "2" and float(run["auroc"]) == pytest.approx(0.85) and float(run["auroc_std"]) == pytest.approx(0.0707107, abs=1e-6)
    assert run["fpr95"] == "0.25" and run["fpr95_std"] == "0" and run["oscr"] == "" and run["open_threshold"] == "0.1"
    assert entry["name"] == 'Name, with "quotes"' and entry["open_f1"] == "0.474" and entry["paper_url"] == "https://example.org/paper"
    # Source files relative to the runs folder (publishable), as recorded only with local_paths.
    files = run["files"].split(";")
    assert len(files) == 2 and all(f.startswith(f"{tmp_path.name}/toy_lt/plain/2025-s") and f.endswith("/results.json") for f in files)
    local = list(csv.DictReader(io.StringIO(csv_table(rows_of(tmp_path / "toy_lt"), local_paths=True))))
    assert all(f.startswith(str(tmp_path)) for f in local[0]["files"].split(";"))


def test_latex_escapes_and_balances(tmp_path):
    make_entry(tmp_path, "p", name="R&D_method 50% #1 {x}", pretraining="in-21k ~ $")
    text = latex_tables(rows_of(tmp_path))
    assert r"R\&D\_method 50\% \#1 \{x\}" in text and r"in-21k \textasciitilde{} \$" in text
    assert text.count("\\begin{table*}") == text.count("\\end{table*}") == 1  # 17 columns span the page
    assert text.count("\\begin{tabular}") == text.count("\\end{tabular}") == 1
    assert text.count("{") == text.count("}") + text.count("\\{") - text.count("\\}")
    assert latex_escape("many > 100, few ≤ 20, a\\b") == r"many $>$ 100, few $\leq$ 20, a\textbackslash{}b"
    # The protocol descriptions' >= and <= are one sign each, not "$>$=".
    assert latex_escape("many >= 100, few <= 20") == r"many $\geq$ 100, few $\leq$ 20"


def test_latex_column_selection_label_and_width(cli, tmp_path):
    make_run(tmp_path / "runs", metrics={"top1": 0.5, "many": 0.6, "medium": 0.5, "few": 0.3, "open_f1": 0.25}, protocol="oltr-code")
    text = cli("report", str(tmp_path / "runs"), "--no-leaderboard", "--format", "latex", "--percent",
               "--columns", "backbone,many,medium,few,top1,open_f1").output
    assert "$>$=" not in text and r"many $\geq$ 100, few $\leq$ 20" in text
    assert r"\label{tab:oltr-toy-lt-oltr-code}" in text
    # Seven columns fit one column of a two-column paper: no \resizebox, a plain table in \small.
    assert "\\begin{table}[t]" in text and "\\small" in text and "resizebox" not in text
    assert "\\begin{tabular}{llrrrrr}" in text
    assert "Method & Backbone & Many & Medium & Few & Top-1 & Open F \\\\" in text
    assert "plain & resnet10 & 60.0 & 50.0 & 30.0 & 50.0 & 25.0 \\\\" in text
    md = cli("report", str(tmp_path / "runs"), "--no-leaderboard", "--columns", "name,ece,seeds").output
    assert "| Method | ECE | Seeds |" in md and "| plain | – | 1 |" in md
    for bad, message in ((["--columns", "top-1,few"], "--columns 'top-1,few': unknown 'top-1'; expected comma-separated keys from: backbone,"),
                         (["--columns", "few,few"], "few given twice"),
                         (["--columns", "few", "--format", "csv"], "--columns applies to Markdown and LaTeX tables")):
        result = cli("report", str(tmp_path / "runs"), "--no-leaderboard", *bad, ok=False)
        assert result.exit_code == 2 and message in result.output


def test_latex_has_the_other_reported_column(tmp_path):
    # The shipped MS1M-LT entries hold only numbers whose metric is undetermined (other_metrics).
    make_entry(tmp_path, "ms1m", dataset="ms1m_lt", metrics={}, other_metrics={"value (metric undetermined)": 0.745})
    make_entry(tmp_path, "with-f", dataset="ms1m_lt", name="Second", metrics={"open_f1": 0.5})
    text = latex_tables(rows_of(tmp_path))
    (spec,) = [l for l in text.splitlines() if l.startswith("\\begin{tabular}")]
    columns = len(spec.split("{")[2].rstrip("}"))
    assert spec.endswith("l}") and "Other reported \\\\" in text
    body = [l for l in text.splitlines() if l.startswith(("Paper method &", "Second &"))]
    assert len(body) == 2 and all(l.count(" & ") + 1 == columns for l in body)
    (ms1m,) = [l for l in body if l.startswith("Paper method")]
    assert ms1m.endswith(" & value (metric undetermined): 0.745 \\\\")


def test_percent_tables(tmp_path):
    make_run(tmp_path, metrics={"top1": 0.3561, "many": 0.4321})
    assert line_of(markdown_tables(rows_of(tmp_path), percent=True), "plain")[9] == "43.2"


def test_tables_show_the_leaderboard_entries_of_the_reported_datasets_only(tmp_path):
    make_run(tmp_path / "runs")
    make_entry(tmp_path / "lb", "same", name="Same dataset")
    make_entry(tmp_path / "lb", "elsewhere", name="Other dataset", dataset="imagenet_lt")
    rows = rows_of(tmp_path / "runs", leaderboard=[tmp_path / "lb"])
    assert {r.name for r in rows_for_tables(rows)} == {"plain", "Same dataset"}
    assert {r.name for r in rows_for_tables(rows_of(leaderboard=[tmp_path / "lb"]))} == {"Same dataset", "Other dataset"}


def test_reported_vs_reproduced_gaps(tmp_path):
    make_run(tmp_path / "runs", method="dme", metrics={"many": 0.40, "few": 0.20, "top1": 0.35, "open_f1": 0.45}, protocol="oltr-2019")
    make_entry(tmp_path / "lb", "paper", method="dme", name="DME (paper)", protocol="oltr-2019",
               metrics={"many": 0.432, "few": 0.185, "open_f1": 0.474})
    make_entry(tmp_path / "lb", "repo", method="dme", name="DME (repo)", protocol="oltr-code", metrics={"open_f1": 0.446})
    make_entry(tmp_path / "lb", "other", method="focal", name="Focal (paper)", metrics={"open_f1": 0.371})
    make_run(tmp_path / "runs", method="dme", seed=5, partial=True)  # a --quick run is never compared
    comparisons = reported_vs_reproduced(rows_of(tmp_path / "runs", leaderboard=[tmp_path / "lb"]))
    assert [(c.reported.name, c.ours.name) for c in comparisons] == [("DME (paper)", "dme"), ("DME (repo)", "dme")]
    paper, repo = comparisons
    assert [(k, round(gap, 6)) for k, _, _, gap in paper.gaps] == [("many", -0.032), ("few", 0.015), ("open_f1", -0.024)]
    assert paper.same_protocol and not repo.same_protocol and not repo.rescored
    text = markdown_tables(rows_of(tmp_path / "runs", leaderboard=[tmp_path / "lb"]))
    assert "### Reported vs reproduced" in text
    assert "| toy_lt | dme | DME (paper) (`oltr-2019`, τ 0.1) | dme (`oltr-2019`, τ 0.1) | many | 0.432 | 0.400 | −0.032 |" in text
    # No predictions in this run directory: the pair keeps our numbers and says why.
    assert "dme (`oltr-2019`, τ 0.1; protocols differ: not re-scored: 2025-s0-" in text and "no predictions/test.npz)" in text


def test_our_run_is_rescored_under_the_reported_protocol_and_threshold(tmp_path, embedded_split):
    from oltr_bench.metrics.evaluate import evaluate
    from oltr_bench.metrics.predictions import load_predictions

    run, as_run = scored_run_dir(tmp_path / "runs", embedded_split)  # protocol oltr, τ 0.1
    make_entry(tmp_path / "lb", "paper", dataset="embedded", name="Plain (paper)", protocol="oltr-2019", open_threshold=0.3,
               metrics={"few": 0.5, "open_f1": 0.6})
    make_entry(tmp_path / "lb", "own", dataset="embedded", name="Plain, own τ", protocol="oltr", open_threshold=None,
               metrics={"open_f1": 0.6})
    (paper, own) = sorted(reported_vs_reproduced(rows_of(tmp_path / "runs", leaderboard=[tmp_path / "lb"])), key=lambda c: c.reported.name)
    expected = evaluate(load_predictions(run / "predictions" / "test.npz"), embedded_split, protocol="oltr-2019", threshold=0.3)["metrics"]
    assert expected["open_f1"] != as_run["metrics"]["open_f1"]  # the re-scoring matters
    assert (paper.rescored, paper.protocol, paper.threshold, paper.mismatch) == (True, "oltr-2019", 0.3, "")
    assert paper.gaps == [("few", 0.5, expected["few"], expected["few"] - 0.5), ("open_f1", 0.6, expected["open_f1"], expected["open_f1"] - 0.6)]
    # A method's own rejection cannot be applied to our predictions: as run, flagged, with the reason.
    assert (own.rescored, own.threshold, own.gaps[0][2]) == (False, 0.1, as_run["metrics"]["open_f1"])
    assert own.mismatch == "the reported method rejects on its own"
    text = markdown_tables(rows_of(tmp_path / "runs", leaderboard=[tmp_path / "lb"]))
    assert "| plain (`oltr-2019`, τ 0.3; re-scored from its predictions (as run: `oltr`, τ 0.1)) | open_f1 |" in text
    build_site(rows_of(tmp_path / "runs", leaderboard=[tmp_path / "lb"]), tmp_path / "site", plots=False)
    compare = (tmp_path / "site" / "compare.html").read_text()
    assert "<code>oltr-2019</code>, τ 0.3" in compare and "re-scored</span> as run: <code>oltr</code>, τ 0.1" in compare
    assert "thresholds differ</span> <span class=\"note\">the reported method rejects on its own</span>" in compare
    # Without the predictions, or with the split gone from its recorded place, the pair falls back to the flag.
    manifest = json.loads((run / "manifest.json").read_text())
    (run / "manifest.json").write_text(json.dumps({**manifest, "split_dir": str(tmp_path / "moved")}))
    (paper, _) = sorted(reported_vs_reproduced(rows_of(tmp_path / "runs", leaderboard=[tmp_path / "lb"])), key=lambda c: c.reported.name)
    assert (paper.rescored, paper.protocol, paper.threshold) == (False, "oltr", 0.1)
    assert paper.mismatch == "not re-scored: run-full-0: the split it was scored on is not at its recorded place"
    assert paper.gaps[1] == ("open_f1", 0.6, as_run["metrics"]["open_f1"], as_run["metrics"]["open_f1"] - 0.6)
    (run / "predictions" / "test.npz").unlink()
    (paper, _) = sorted(reported_vs_reproduced(rows_of(tmp_path / "runs", leaderboard=[tmp_path / "lb"])), key=lambda c: c.reported.name)
    assert paper.mismatch == "not re-scored: run-full-0: no predictions/test.npz"


def test_old_results_without_new_keys_still_report(tmp_path):
    run = make_run(tmp_path, with_curves=False, with_train_counts=False)
    results = json.loads((run / "results.json").read_text())
    for key in ("evaluation_set", "partial", "per_class_acc"):
        del results[key]
    (run / "results.json").write_text(json.dumps(results))
    assert "| plain |" in markdown_tables(rows_of(tmp_path))


def test_report_cli_formats_and_errors(cli, tmp_path):
    make_run(tmp_path / "runs", metrics={"top1": 0.5, "open_f1": 0.25})
    out = cli("report", str(tmp_path / "runs"), "--no-leaderboard").output
    assert out.startswith("### toy_lt — protocol `oltr`") and "imagenet_lt" not in out
    cli("report", str(tmp_path / "runs"), "--format", "csv", "--output", str(tmp_path / "t.csv"))
    assert next(csv.DictReader(open(tmp_path / "t.csv")))["open_f1"] == "0.25"
    assert "\\toprule" in cli("report", str(tmp_path / "runs"), "--format", "latex").output
    # With no runs at all the leaderboard shipped with oltr-bench is still reported.
    assert "### imagenet_lt — protocol `oltr-2019`" in cli("report").output
    bad = cli("report", "--no-leaderboard", ok=False)
    assert bad.exit_code == 2 and "nothing to report" in bad.output
    # --percent never goes silently unused: CSV keeps fractions, and the site has no tables.
    bad = cli("report", str(tmp_path / "runs"), "--format", "csv", "--percent", ok=False)
    assert bad.exit_code == 2 and "CSV always holds fractions in [0, 1]" in bad.output
    bad = cli("report", str(tmp_path / "runs"), "--html", str(tmp_path / "site"), "--percent", ok=False)
    assert bad.exit_code == 2 and "--percent applies to the tables" in bad.output and not (tmp_path / "site").exists()
    assert "| 50.0 | 25.0 |" in cli("report", str(tmp_path / "runs"), "--html", str(tmp_path / "site"), "--percent", "--format", "md", "--no-plots").output
    (tmp_path / "junk.json").write_text("{}")
    bad = cli("report", str(tmp_path / "junk.json"), ok=False)
    assert bad.exit_code == 2 and "expected a results.json, a leaderboard entry" in bad.output

"""``oltr-bench suite`` end to end on the embedded benchmark (--quick): shared stage-1 runs,
skip and resume on a second invocation, the report files, and the submitit launcher (LocalExecutor)."""

import json

import pytest

from oltr_bench.formats.rundir import RunDir


def run_dirs(out, method):
    return sorted(p for p in (out / "runs" / "embedded" / method).iterdir() if p.is_dir())


def test_suite_plans_runs_reports_and_finishes_after_an_interruption(cli, embedded_split, tmp_path):
    out = tmp_path / "suite"
    args = ["suite", "--methods", "plain,openmax", "--datasets", str(embedded_split.path), "--quick", "--out", str(out)]
    dry = cli(*args, "--dry-run")
    assert "2 runs (0 done, 0 resume, 2 new)" in dry.output and "after embedded/plain/seed0/" in dry.output
    assert not (out / "runs").exists()
    first = cli(*args)
    assert "### Open-set F-measure (the OLTR paper's table)" in first.output
    assert "| openmax | " in first.output and "(quick)" in first.output
    for name in ("suite.md", "suite.tex", "site/suite.html", "site/index.html"):
        assert (out / "report" / name).is_file()
    (plain,), (openmax,) = run_dirs(out, "plain"), run_dirs(out, "openmax")
    assert json.loads((openmax / "manifest.json").read_text())["stage1_run"] == str(plain.resolve())
    # the same command again: nothing to do
    assert "2 runs (2 done, 0 resume, 0 new)" in cli(*args, "--dry-run").output
    # an interrupted openmax run is resumed in its own directory; plain is not run again
    run = RunDir(openmax)
    manifest = run.read_manifest()
    run.write_manifest({**manifest, "status": "running"})
    run.clear_results()
    assert "resume embedded/openmax/" in cli(*args, "--dry-run").output
    cli(*args)
    assert run_dirs(out, "plain") == [plain] and run_dirs(out, "openmax") == [openmax] and RunDir(openmax).is_complete


def test_submitit_local_executor_runs_stage2_after_its_stage1(cli, embedded_split, tmp_path):
    pytest.importorskip("submitit")
    out = tmp_path / "suite"
    result = cli("suite", "--methods", "dme", "--datasets", str(embedded_split.path), "--quick", "--out", str(out),
                 "--launcher", "submitit-local")
    assert "| dme | " in result.output
    (plain,), (dme,) = run_dirs(out, "plain"), run_dirs(out, "dme")
    assert RunDir(plain).is_complete and RunDir(dme).is_complete
    assert json.loads((dme / "manifest.json").read_text())["stage1_run"] == str(plain.resolve())
    assert any((out / "submitit").iterdir())  # submitit's job folders

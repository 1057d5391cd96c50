"""``oltr-bench suite`` end to end on the embedded benchmark (--quick): shared stage-1 runs,
skip and resume on a second invocation, the report files, and the submitit launcher (LocalExecutor)."""

import json

import pytest

from oltr_bench.formats.rundir import RunDir
from oltr_bench.registry import DATASETS
from tests.tiny_data import TINY, write_face_pack


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


def test_the_ms1m_lt_column_is_the_face_identification_of_the_suites_runs(cli, tmp_path):
    """An MS1M-LT split from a RecordIO pack in the real layout: the suite trains, then embeds and
    scores each run (heldout protocol), and the column shows that run's rank-1."""
    write_face_pack(tmp_path / "emore")
    split = DATASETS.get("ms1m")().make_splits(
        tmp_path / "splits", seed=0, overwrite=False, progress=False, root=tmp_path / "emore",
        train_fraction=0.5, val_per_class=1, test_per_class=2, open_per_class=2,
    )
    out = tmp_path / "suite"
    args = ["suite", "--methods", "plain", "--datasets", str(split.path), "--quick", "--out", str(out)]
    for override in TINY:
        args += ["--set", override]
    result = cli(*args)
    (plain,) = sorted(p for p in (out / "runs" / "ms1m_lt" / "plain").iterdir() if p.is_dir())
    faces = json.loads((plain / RunDir.FACE_RESULTS).read_text())
    assert faces["protocol"] == "heldout" and faces["method"] == "plain"
    metrics = faces["metrics"]
    # a quick run's face numbers are marked quick, as every other column's
    assert f"| plain | {metrics['rank1']:.3f} (quick) (rank-1, all) |" in result.output
    assert f"| plain | {metrics['rank1_zero']:.3f} (quick) (rank-1, zero-shot) |" in result.output
    # the same command again: the run and its face results are there, nothing is redone
    mtime = (plain / RunDir.FACE_RESULTS).stat().st_mtime_ns
    again = cli(*args)
    assert "1 run (1 done, 0 resume, 0 new)" in again.output and "faces  " not in again.output
    assert (plain / RunDir.FACE_RESULTS).stat().st_mtime_ns == mtime

"""The suite (issue 14): its plan (shared stage-1 runs, statuses), its launcher order and its tables."""

import json
import time

import pytest

from oltr_bench.config import config_hash
from oltr_bench.errors import OltrError
from oltr_bench.formats.rundir import RunDir
from oltr_bench.report.collect import collect
from oltr_bench.report.rows import build_rows
from oltr_bench.report.suite import NOT_EVALUATED, suite_cells, suite_latex, suite_markdown
from oltr_bench.suite import launch
from oltr_bench.suite.plan import PAPER_METHODS, make_plan, parse_methods, parse_seeds
from tests.report_fixtures import list_split, make_entry, make_run


def test_parse_methods_and_seeds():
    assert parse_methods("paper") == ["plain", "focal", "range", "openmax", "fslwf", "dme"]
    assert parse_methods("all")[:6] == list(PAPER_METHODS) and "crt" in parse_methods("modern")
    assert parse_methods("dme, plain,dme") == ["dme", "plain"]
    with pytest.raises(OltrError):
        parse_methods("nonsense")
    assert parse_seeds("3") == [0, 1, 2] and parse_seeds("0") == [0] and parse_seeds("4,1") == [4, 1]
    with pytest.raises(OltrError, match="expected a count"):
        parse_seeds("x")


def fake_run(runs, run, complete):
    """A run directory of the planned ``run``: complete, or interrupted (running, no results.json)."""
    d = RunDir.create(runs, run.dataset, run.method, config_hash(run.config))
    d.write_config(run.config.to_dict())
    d.write_manifest({"format": "oltr-bench-run/1", "status": "complete" if complete else "running",
                      "split_fingerprint": run.split.fingerprint, "quick": False})
    if complete:
        d.results_file.write_text("{}")
    return d


def test_plan_shares_stage1_runs_and_reads_statuses(tmp_path):
    split = list_split(tmp_path)
    runs = tmp_path / "runs"
    plan = make_plan([split], list(PAPER_METHODS), [0, 1], runs)
    assert len(plan.runs) == 14  # 7 per seed: the six methods and fslwf's stage 1
    by = {(r.method, r.seed): r for r in plan.runs.values()}
    for seed in (0, 1):
        assert by[("dme", seed)].depends_on == by[("openmax", seed)].depends_on == by[("plain", seed)].key
        assert by[("fslwf", seed)].depends_on == by[("fslwf_stage1", seed)].key
        assert by[("fslwf_stage1", seed)].rows == [] and by[("plain", seed)].rows == ["plain"]
        assert by[("plain", seed)].config.seed == seed
    order = [r.key for r in plan.order()]
    assert all(order.index(r.depends_on) < order.index(r.key) for r in plan.runs.values() if r.depends_on)
    assert plan.counts() == {"done": 0, "resume": 0, "new": 14}
    # a finished plain run is skipped, an interrupted dme run is resumed
    fake_run(runs, by[("plain", 0)], complete=True)
    fake_run(runs, by[("dme", 0)], complete=False)
    again = make_plan([split], list(PAPER_METHODS), [0, 1], runs)
    statuses = {(r.method, r.seed): r.status for r in again.runs.values()}
    assert statuses[("plain", 0)] == "done" and statuses[("dme", 0)] == "resume" and statuses[("plain", 1)] == "new"
    assert "done   toy_lt/plain/seed0/" in again.describe()


def test_plan_stage1_is_the_run_a_stage2_run_looks_for(tmp_path):
    split = list_split(tmp_path)
    plan = make_plan([split], ["openmax", "fslwf"], [0], tmp_path / "runs",
                     overrides=["train.epochs=2", "profile=fast", "params.setting=oltr"])
    by = {r.method: r for r in plan.runs.values()}
    # stage-1 runs get the shared keys (seed, profile) and not a stage's schedule or the stage-2 params
    assert by["plain"].config.profile == "fast" and by["plain"].config.train.epochs == 30  # the folder protocol
    assert by["openmax"].config.train.epochs == 2 and by["openmax"].config.params["setting"] == "oltr"
    base = make_plan([split], ["fslwf"], [0], tmp_path / "runs", overrides=["params.first_stage=base"])
    assert {r.method: r for r in base.runs.values()}["fslwf_stage1"].config.params["classes"] == "base"


def test_local_launcher_runs_stage1_first_and_skips_dependants_of_failures(tmp_path, monkeypatch):
    split = list_split(tmp_path)
    plan = make_plan([split], ["plain", "dme", "openmax", "focal"], [0], tmp_path / "runs")
    started = []

    def fake_execute(argv, env=None, log_file=None):
        method = argv[argv.index("--method") + 1]
        assert "--resume" in argv and argv[argv.index("--out") + 1] == str(tmp_path / "runs")
        started.append(method)
        if method == "plain":
            raise RuntimeError("plain failed")
        return 0

    monkeypatch.setattr(launch, "execute", fake_execute)
    monkeypatch.setattr(launch, "_cuda_devices", lambda: [])
    outcome = launch.run_local(plan, 2, tmp_path / "logs", on_event=lambda m: None)
    assert sorted(started) == ["focal", "plain"]
    assert len(outcome.failed) == 1 and len(outcome.skipped) == 2 and len(outcome.finished) == 1


def test_local_launcher_says_start_when_a_run_starts_not_when_it_is_queued(tmp_path, monkeypatch):
    split = list_split(tmp_path)
    plan = make_plan([split], ["plain", "focal", "range"], [0], tmp_path / "runs")
    events, seen_at_start = [], []

    def fake_execute(argv, env=None, log_file=None):
        seen_at_start.append((argv[argv.index("--method") + 1], [e for e in events if e.startswith("start")]))
        time.sleep(0.05)
        return 0

    monkeypatch.setattr(launch, "execute", fake_execute)
    monkeypatch.setattr(launch, "_cuda_devices", lambda: [])
    launch.run_local(plan, 1, tmp_path / "logs", on_event=events.append)
    # one job: when the n-th run starts, exactly n runs have been announced, the last one being it
    for n, (method, starts) in enumerate(seen_at_start, 1):
        assert len(starts) == n and f"/{method}/seed0/" in starts[-1] and starts[-1].endswith(f"[{n}/3]")


def test_slurm_jobs_depend_on_their_stage1_job(tmp_path):
    split = list_split(tmp_path)
    plan = make_plan([split], ["plain", "dme"], [0], tmp_path / "runs")

    class Job:
        def __init__(self, n):
            self.job_id = str(n)

        def result(self):
            return 0

    class AutoExecutor:  # the calls submitit's AutoExecutor gets
        cluster = "slurm"

        def __init__(self):
            self.params, self.submitted = {}, []

        def update_parameters(self, **kw):
            self.params.update(kw)

        def submit(self, fn, argv, *args):
            self.submitted.append((argv, dict(self.params.get("slurm_additional_parameters", {}))))
            return Job(100 + len(self.submitted))

    executor = AutoExecutor()
    launch.run_submitit(plan, executor, launch.SlurmOptions(gpus_per_job=2), on_event=lambda m: None)
    (plain_argv, plain_extra), (dme_argv, dme_extra) = executor.submitted
    assert "dependency" not in plain_extra and dme_extra["dependency"] == "afterok:101"
    assert dme_argv[1:5] == ["-m", "torch.distributed.run", "--standalone", "--nproc_per_node"]  # 2 GPUs: torchrun


def test_suite_tables_against_published_values(tmp_path):
    for seed, f in ((0, 0.40), (1, 0.44)):
        make_run(tmp_path / "runs", method="plain", dataset="imagenet_lt", seed=seed, protocol="oltr-2019",
                 profile="faithful", metrics={"open_f1": f, "many": 0.5, "top1": 0.3})
    make_run(tmp_path / "runs", method="dme", dataset="imagenet_lt", seed=0, protocol="oltr-2019", profile="fast",
             metrics={"open_f1": 0.5})
    make_entry(tmp_path / "lb", "oltr2019-plain", dataset="imagenet_lt", method="plain", protocol="oltr-2019",
               open_threshold=0.1, metrics={"open_f1": 0.295, "many": 0.409},
               paper={"title": "OLTR", "url": "https://arxiv.org/abs/1904.05160"})
    rows = build_rows(collect([tmp_path / "runs", tmp_path / "lb"]))
    cells = suite_cells(rows, ["plain", "dme"], ["imagenet_lt", "ms1m_lt"], "open_f1")
    plain = cells[("plain", "imagenet_lt")]
    assert plain.ours.metrics["open_f1"] == pytest.approx(0.42) and plain.published.metrics["open_f1"] == 0.295
    assert plain.delta == pytest.approx(0.42 - 0.295)
    assert cells[("dme", "imagenet_lt")].published is None and cells[("dme", "imagenet_lt")].ours.fast
    assert cells[("plain", "ms1m_lt")].note == NOT_EVALUATED
    text = suite_markdown(rows, ["plain", "dme"], ["imagenet_lt", "ms1m_lt"])
    assert "| plain | 0.420 ± 0.028 | 0.295 | +0.125 | not evaluated | – | – |" in text
    assert "| dme | 0.500 † | – | – |" in text
    assert "Profiles of these runs: faithful, fast." in text
    assert "0.420 $\\pm$ 0.028" in suite_latex(rows, ["plain", "dme"], ["imagenet_lt"])


def with_faces(run_dir, rank1: float, zero: float | None) -> None:
    """Write the run's face_results.json (SPEC.md §6), as ``embed`` + ``evaluate-faces`` would."""
    manifest = json.loads((run_dir / "manifest.json").read_text())
    faces = {"format": "oltr-bench-face-results/1", "dataset": manifest["dataset"], "method": manifest["method"],
             "protocol": "heldout", "distractors": 10, "groups": {"many": 1}, "counts": {"probes": 10},
             "provenance": {"embeddings": str(run_dir / "embeddings" / "heldout.npz")},
             "metrics": {"rank1": rank1, "rank1_many": 0.9, "rank1_medium": 0.8, "rank1_few": 0.5, "rank1_one": 0.3,
                         "rank1_zero": zero}}
    (run_dir / RunDir.FACE_RESULTS).write_text(json.dumps(faces))


def test_the_ms1m_lt_column_is_face_identification_rank1_by_shot_group(tmp_path):
    runs = tmp_path / "runs"
    for seed, rank1, zero in ((0, 0.60, 0.20), (1, 0.64, 0.30)):
        with_faces(make_run(runs, method="plain", dataset="ms1m_lt", seed=seed, profile="faithful"), rank1, zero)
    with_faces(make_run(runs, method="dme", dataset="ms1m_lt", profile="faithful"), 0.70, None)
    make_run(runs, method="focal", dataset="ms1m_lt", profile="faithful")  # trained, never embedded
    with_faces(make_run(runs, method="plain", dataset="embedded", profile="faithful"), 0.99, 0.99)  # not MS1M-LT
    rows, faces = build_rows(collected := collect([runs])), collected.faces
    top1 = suite_cells(rows, ["plain", "dme", "focal"], ["ms1m_lt"], "top1", faces=faces)
    assert top1[("plain", "ms1m_lt")].face_key == "rank1" and top1[("plain", "ms1m_lt")].face_mean == pytest.approx(0.62)
    assert top1[("plain", "ms1m_lt")].face_std == pytest.approx(0.04 / 2 ** 0.5)
    assert top1[("focal", "ms1m_lt")].note == NOT_EVALUATED
    text = suite_markdown(rows, ["plain", "dme", "focal"], ["ms1m_lt"], faces=faces)
    # open F's table shows the zero-shot identities (MS1M-LT's open classes); no published value, no delta
    assert "| plain | 0.250 ± 0.071 (rank-1, zero-shot) | – | – |" in text
    assert "| dme | – (rank-1, zero-shot) | – | – |" in text  # no zero-shot probes: no value, said which metric
    assert "| plain | 0.620 ± 0.028 (rank-1, all) | – | – |" in text and "| focal | not evaluated | – | – |" in text
    few = suite_cells(rows, ["plain"], ["ms1m_lt"], "few", faces=faces)[("plain", "ms1m_lt")]
    assert (few.face_key, few.face_mean, few.face_std) == ("rank1_few", 0.5, 0.0)
    assert suite_cells(rows, ["plain"], ["ms1m_lt"], "auroc", faces=faces)[("plain", "ms1m_lt")].note == "–"


def test_the_ms1m_lt_column_never_averages_profiles_and_marks_fast_and_quick_runs(tmp_path):
    runs = tmp_path / "runs"
    with_faces(make_run(runs, method="plain", dataset="ms1m_lt", profile="faithful"), 0.60, 0.2)
    with_faces(make_run(runs, method="plain", dataset="ms1m_lt", profile="fast", seed=1), 0.10, 0.1)
    with_faces(make_run(runs, method="plain", dataset="ms1m_lt", profile="fast", seed=2), 0.20, 0.1)
    with_faces(make_run(runs, method="dme", dataset="ms1m_lt", profile="fast", partial=True), 0.05, 0.0)
    rows, faces = build_rows(collected := collect([runs])), collected.faces
    text = suite_markdown(rows, ["plain", "dme"], ["ms1m_lt"], faces=faces)
    # plain: the two fast seeds are one row (the most seeds, as in every column), never mixed with the faithful run
    assert "| plain | 0.150 ± 0.071 † (rank-1, all) | – | – |" in text
    assert "| dme | 0.050 † (quick) (rank-1, all) | – | – |" in text


def test_the_suite_identifies_faces_of_ms1m_lt_runs_without_face_results(tmp_path, monkeypatch):
    import oltr_bench.engine.embed as embed

    runs = {}
    for name, dataset, done in (("a", "ms1m_lt", False), ("b", "ms1m_lt", True), ("c", "imagenet_lt", False), ("d", "ms1m_lt", False)):
        path = tmp_path / name
        path.mkdir()
        (path / "manifest.json").write_text(json.dumps({"dataset": dataset}))
        if done:
            (path / "face_results.json").write_text("{}")
        runs[name] = path
    called = []

    def fake_identify(path):
        called.append(path.name)
        if path.name == "d":
            raise OltrError("no heldout identities in the split")

    monkeypatch.setattr(embed, "identify_run", fake_identify)
    failed = launch.identify_faces(list(runs.values()), {"ms1m_lt"}, on_event=lambda m: None)
    assert called == ["a", "d"] and failed == [f"{runs['d']}: no heldout identities in the split"]

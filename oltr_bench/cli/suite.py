"""``oltr-bench suite``: the OLTR paper's comparison in one command, on one machine or a Slurm cluster."""

from __future__ import annotations

import logging
import sys
import time
from pathlib import Path

import click

from oltr_bench.errors import OltrError

log = logging.getLogger(__name__)


def _splits(datasets: str):
    from oltr_bench.paths import splits_root
    from oltr_bench.registry import DATASETS
    from oltr_bench.splits.format import SplitDir, load_split_dir
    from oltr_bench.splits.locate import find_split

    out = []
    for name in dict.fromkeys(d.strip() for d in datasets.split(",") if d.strip()):
        if name == "embedded" and not SplitDir.exists(splits_root() / "embedded"):
            log.info("making the embedded split in %s", splits_root() / "embedded")
            out.append(DATASETS.get("embedded")().make_splits(splits_root(), seed=0, overwrite=False, progress=False))
            continue
        out.append(find_split(name) if not SplitDir.exists(Path(name)) else load_split_dir(Path(name)))
    if not out:
        raise OltrError(f"--datasets {datasets!r}: no dataset")
    return out


@click.command("suite")
@click.option("--methods", default="paper", show_default=True,
              help="paper (plain, focal, range, openmax, fslwf, dme: the OLTR paper's table), modern (crt, lws, tau_norm, "
                   "balanced_softmax, logit_adjust, logit_adjust_posthoc, ldam_drw), all, or a comma-separated list.")
@click.option("--datasets", default="embedded", show_default=True,
              help="Comma-separated datasets (split names under oltr_work/splits, or split directories).")
@click.option("--seeds", default="1", show_default=True, help="A count N (seeds 0..N-1) or a comma-separated list (0,1,2).")
@click.option("--profile", type=click.Choice(["standard", "faithful", "fast"]),
              help="Numerics of every run [default: the dataset's: faithful on imagenet_lt, places_lt and ms1m_lt "
                   "(the official protocol), standard elsewhere]; fast: bf16, TF32, channels-last, compile, feature cache.")
@click.option("--set", "overrides", multiple=True, metavar="KEY=VALUE", help="Override a config value of every run as run --set does (repeatable); params.KEY only for the methods "
                   "that have the parameter; a stage-1 run gets the keys its stage-2 runs share with it.")
@click.option("--quick", is_flag=True, help="Seconds-long reduced runs of the same code paths (never a result).")
@click.option("--out", type=click.Path(path_type=Path),
              help="Suite folder: runs in OUT/runs, the report in OUT/report [default: oltr_work/runs and oltr_work/report/suite].")
@click.option("--jobs", type=click.IntRange(min=1), default=1, show_default=True,
              help="Local launcher: runs side by side (one GPU each when there are GPUs; at most one run per GPU; "
                   "on the CPU cores/N threads each, which changes CPU numbers against --jobs 1).")
@click.option("--launcher", type=click.Choice(["local", "slurm", "submitit-local"]), default="local", show_default=True,
              help="local: processes on this machine; slurm: one Slurm job per run through submitit, stage-2 jobs after "
                   "their stage-1 job (afterok); submitit-local: submitit's LocalExecutor (try a Slurm setup here).")
@click.option("--partition", help="Slurm partition.")
@click.option("--time", "time_min", type=click.IntRange(min=1), default=24 * 60, show_default=True, help="Slurm: time limit per job in minutes.")
@click.option("--gpus-per-job", type=click.IntRange(min=0), default=1, show_default=True,
              help="Slurm: GPUs per job; more than 1 runs the job's run under torchrun (one process per GPU).")
@click.option("--cpus-per-job", type=click.IntRange(min=1), default=8, show_default=True, help="Slurm: CPU cores per job.")
@click.option("--percent", is_flag=True, help="Tables in percent.")
@click.option("--dry-run", is_flag=True, help="Print the plan (each run: done, resume or new, and what it waits for) and exit.")
def suite_cmd(methods, datasets, seeds, profile, overrides, quick, out, jobs, launcher, partition, time_min, gpus_per_job,
              cpus_per_job, percent, dry_run) -> None:
    """Run the OLTR paper's comparison and report it next to the published values.

    Plans every (dataset, method, seed) run with the stage-1 run it starts from (stage-1 runs are
    shared: plain is trained once per seed for plain, openmax and dme), skips finished runs,
    resumes unfinished ones, runs the rest, then writes the report: the paper's table (rows:
    methods; columns: datasets; cells: open F mean ± std over seeds, the published value and Δ)
    and the many/medium/few/top-1/AUROC tables as Markdown (suite.md, also printed), LaTeX
    (suite.tex) and a site page (site/suite.html). The MS1M-LT column is face identification:
    finished MS1M-LT runs without face results are embedded and scored first (heldout protocol,
    in this process), and the column shows rank-1 by shot group. Interrupt it and run the same
    command again: finished runs are not redone.

    \b
    Examples:
      oltr-bench suite --dry-run
      oltr-bench suite --methods paper --seeds 3 --jobs 2
      oltr-bench suite --datasets imagenet_lt,places_lt --seeds 3 --profile fast
      oltr-bench suite --datasets imagenet_lt --seeds 3 --launcher slurm --partition gpu --gpus-per-job 1 --time 720
    """
    from oltr_bench.paths import report_dir, runs_root
    from oltr_bench.suite.plan import make_plan, parse_methods, parse_seeds

    method_list, seed_list = parse_methods(methods), parse_seeds(seeds)
    sets = [*overrides, *([f"profile={profile}"] if profile else [])]
    runs = out / "runs" if out else runs_root()
    report = out / "report" if out else report_dir() / "suite"
    plan = make_plan(_splits(datasets), method_list, seed_list, runs, overrides=sets, quick=quick)
    click.echo(plan.describe(), err=dry_run is False)
    if dry_run:
        return
    from oltr_bench.suite import launch

    started = time.perf_counter()
    if launcher == "local":
        outcome = launch.run_local(plan, jobs, report / "logs", on_event=lambda m: click.echo(m, err=True))
    else:
        options = launch.SlurmOptions(partition, time_min, gpus_per_job, cpus_per_job)
        executor = launch.make_executor(launcher, (out or runs.parent) / "submitit", options)
        outcome = launch.run_submitit(plan, executor, options, on_event=lambda m: click.echo(m, err=True))
    elapsed = time.perf_counter() - started
    text, face_failures = write_report(plan, report, percent)
    click.echo(text)
    click.echo(f"suite: {len(outcome.finished)} runs finished, {plan.counts()['done']} already done, "
               f"{len(outcome.failed)} failed, {len(outcome.skipped)} skipped, in {elapsed:.0f} s; report: {report.resolve()}",
               err=True)
    for why in face_failures:
        click.echo(f"failed: face identification of {why}", err=True)
    if face_failures and not (outcome.failed or outcome.skipped):
        raise OltrError(f"the face identification of {len(face_failures)} runs failed; fix the cause and run the same command again")
    if outcome.failed or outcome.skipped:
        for key, why in outcome.failed.items():
            click.echo(f"failed: {key}: {why}", err=True)
        raise OltrError(f"{len(outcome.failed)} runs failed and {len(outcome.skipped)} were skipped; fix the cause and run "
                        "the same command again: finished runs are not redone")


def write_report(plan, report: Path, percent: bool = False) -> tuple[str, list[str]]:
    """suite.md, suite.tex and the site (with suite.html) from the plan's complete runs and the
    leaderboard, after the face identification of the MS1M-LT runs that lack it; returns the
    Markdown and the face identifications that failed."""
    from oltr_bench.report.collect import collect, leaderboard_dirs
    from oltr_bench.report.rows import build_rows
    from oltr_bench.report.site import build_site
    from oltr_bench.report.suite import FACES_DATASET, suite_html, suite_latex, suite_markdown
    from oltr_bench.suite.launch import identify_faces
    from oltr_bench.engine.runner import same_config_run
    from oltr_bench.utils.io import atomic_write_text

    run_dirs = []
    for run in plan.runs.values():
        found = same_config_run(run.config, run.split, plan.runs_root, plan.quick)
        if run.rows and found is not None and found.is_complete:
            run_dirs.append(found.path)
    failed = identify_faces(run_dirs, {FACES_DATASET} & set(plan.datasets), on_event=lambda m: click.echo(m, err=True))
    collected = collect(run_dirs, leaderboard_dirs=leaderboard_dirs())
    rows, faces = build_rows(collected), collected.faces
    report.mkdir(parents=True, exist_ok=True)
    text = suite_markdown(rows, plan.methods, plan.datasets, percent, faces)
    atomic_write_text(report / "suite.md", "# oltr-bench suite\n\n" + text)
    atomic_write_text(report / "suite.tex", suite_latex(rows, plan.methods, plan.datasets, percent, faces))
    site = build_site(rows, report / "site", faces=faces,
                      extra_pages={"suite.html": suite_html(rows, plan.methods, plan.datasets, percent, faces)})
    log.info("site: %s", site.index.parent / "suite.html")
    return text, failed


COMMANDS = (suite_cmd,)

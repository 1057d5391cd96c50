"""Running a plan's runs through existing engines: local processes or submitit (Slurm).

Every run is the same command, ``python -m oltr_bench run --method M --splits SPLIT --out RUNS
--resume --set ...`` (with ``torchrun`` in front for a multi-GPU Slurm job): ``--resume``
finishes an unfinished run from its last checkpoint and returns at once for a complete one, and a
stage-2 run finds the suite's stage-1 run by the ordinary stage-1 lookup. So interrupting the
suite and running it again redoes nothing that finished.

- ``local``: :class:`concurrent.futures.ThreadPoolExecutor` with ``jobs`` workers, each waiting
  on one ``oltr-bench run`` process; a run is started once the stage-1 run it starts from
  finished. With GPUs, each process sees one (``CUDA_VISIBLE_DEVICES``), and at most one run per
  GPU is started; on the CPU each process gets ``cores / jobs`` threads.
- ``slurm``: one Slurm job per run through submitit's ``AutoExecutor``; a stage-2 job is submitted
  with ``--dependency=afterok:<its stage-1 job>``. ``submitit-local`` is submitit's
  ``LocalExecutor`` (the same code on this machine, for trying a setup; it knows no
  dependencies, so a stage-2 job is submitted when its stage-1 job has finished).
"""

from __future__ import annotations

import logging
import os
import queue
import subprocess
import sys
import threading
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from oltr_bench.errors import OltrError
from oltr_bench.suite.plan import Plan, PlannedRun

log = logging.getLogger(__name__)
LAUNCHERS = ("local", "slurm", "submitit-local")


@dataclass
class SlurmOptions:
    partition: str | None = None
    time_min: int = 24 * 60
    gpus_per_job: int = 1
    cpus_per_job: int = 8
    extra: dict[str, str] | None = None  # further sbatch options (slurm_additional_parameters)


def run_argv(run: PlannedRun, runs_root: Path, quick: bool, gpus: int = 0) -> list[str]:
    """The command of one run (``torchrun`` over ``gpus`` processes when there is more than one GPU)."""
    head = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", str(gpus)] if gpus > 1 \
        else [sys.executable]
    argv = [*head, "-m", "oltr_bench", "run", "--method", run.method, "--splits", str(run.split.path), "--out",
            str(runs_root), "--resume", "--no-progress"]
    for text in run.overrides:
        argv += ["--set", text]
    return argv + (["--quick"] if quick else [])


def execute(argv: list[str], env: dict[str, str] | None = None, log_file: str | None = None) -> int:
    """Run one command to its end (a submitit job calls this); raise if it fails."""
    full_env = {**os.environ, **(env or {})}
    if log_file:
        Path(log_file).parent.mkdir(parents=True, exist_ok=True)
        with open(log_file, "ab") as out:
            rc = subprocess.run(argv, env=full_env, stdout=out, stderr=subprocess.STDOUT).returncode
    else:  # the run's messages on our standard error; our standard output is the report
        try:
            err = sys.stderr.fileno()
        except (AttributeError, OSError, ValueError):  # a captured stream (click's test runner)
            err = None
        rc = subprocess.run(argv, env=full_env, stdout=err).returncode
    if rc != 0:
        raise RuntimeError(f"{' '.join(argv)} exited with status {rc}" + (f"; its output: {log_file}" if log_file else ""))
    return rc


@dataclass
class Outcome:
    finished: list[str]
    failed: dict[str, str]  # key -> why
    skipped: list[str]  # their stage-1 run failed


def _cuda_devices() -> list[str]:
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if visible is not None:
        return [d for d in visible.split(",") if d.strip()]
    try:
        import torch

        return [str(i) for i in range(torch.cuda.device_count())]
    except Exception:  # noqa: BLE001 - no usable CUDA: CPU runs
        return []


def run_local(plan: Plan, jobs: int, logs: Path, on_event: Callable[[str], None] = log.info) -> Outcome:
    """Run the plan's unfinished runs, ``jobs`` at a time, each after its stage-1 run."""
    todo = {r.key: r for r in plan.order() if r.status != "done"}
    total = len(todo)
    gpus = _cuda_devices()
    jobs = max(1, min(jobs, len(gpus)) if gpus else jobs)
    free: queue.Queue[str | None] = queue.Queue()
    for device in (gpus or [None] * jobs):
        free.put(device)
    threads = str(max(1, (os.cpu_count() or 1) // jobs))
    started, lock = [0], threading.Lock()

    def start(run: PlannedRun) -> int:
        device = free.get()
        with lock:  # said when the run starts, not when it is queued behind the other jobs
            started[0] += 1
            on_event(f"start  {run.key}  [{started[0]}/{total}]")
        try:
            env = {"OMP_NUM_THREADS": threads} if device is None else {"CUDA_VISIBLE_DEVICES": device}
            log_file = None if jobs == 1 else str(logs / f"{run.key.replace('/', '_')}.log")
            return execute(run_argv(run, plan.runs_root, plan.quick), env, log_file)
        finally:
            free.put(device)

    done = {r.key for r in plan.runs.values() if r.status == "done"}
    outcome = Outcome([], {}, [])
    running: dict[Future, str] = {}
    with ThreadPoolExecutor(max_workers=jobs) as pool:
        while todo or running:
            for key, run in list(todo.items()):
                if run.depends_on is None or run.depends_on in done:
                    del todo[key]
                    running[pool.submit(start, run)] = key
                elif run.depends_on in outcome.failed or run.depends_on in outcome.skipped:
                    del todo[key]
                    outcome.skipped.append(key)
                    on_event(f"skip   {key}: its stage-1 run {run.depends_on} failed")
            if not running:
                break
            finished, _ = wait(running, return_when=FIRST_COMPLETED)
            for future in finished:
                key = running.pop(future)
                error = future.exception()
                if error is None:
                    done.add(key)
                    outcome.finished.append(key)
                    on_event(f"done   {key}")
                else:
                    outcome.failed[key] = str(error)
                    on_event(f"FAILED {key}: {error}")
    return outcome


def make_executor(launcher: str, folder: Path, options: SlurmOptions) -> Any:
    """submitit's executor: ``AutoExecutor`` on a Slurm cluster, ``LocalExecutor`` for ``submitit-local``."""
    try:
        import submitit
    except ImportError:
        raise OltrError(f"--launcher {launcher} needs submitit: pip install 'oltr-bench[slurm]' (or pip install submitit)") from None
    if launcher == "submitit-local":
        executor = submitit.LocalExecutor(folder=str(folder))
        executor.update_parameters(timeout_min=options.time_min)
        return executor
    executor = submitit.AutoExecutor(folder=str(folder), cluster="slurm")
    params: dict[str, Any] = {"timeout_min": options.time_min, "gpus_per_node": options.gpus_per_job, "tasks_per_node": 1,
                              "cpus_per_task": options.cpus_per_job, "nodes": 1}
    if options.partition:
        params["slurm_partition"] = options.partition
    executor.update_parameters(**params)
    return executor


def run_submitit(plan: Plan, executor: Any, options: SlurmOptions, on_event: Callable[[str], None] = log.info) -> Outcome:
    """Submit one job per unfinished run; a stage-2 job depends on its stage-1 job (``afterok``) on
    Slurm, and is submitted after it finished with executors that have no dependencies."""
    slurm = type(executor).__name__ == "AutoExecutor" and getattr(executor, "cluster", "slurm") == "slurm"
    jobs: dict[str, Any] = {}
    outcome = Outcome([], {}, [])
    done = {r.key for r in plan.runs.values() if r.status == "done"}

    def result(key: str) -> bool:
        if key in done:
            return True
        if key in outcome.failed or key in outcome.skipped:
            return False
        try:
            jobs[key].result()
        except Exception as exc:  # noqa: BLE001 - a job's failure is reported, the rest goes on
            outcome.failed[key] = str(exc).strip().splitlines()[-1] if str(exc).strip() else type(exc).__name__
            on_event(f"FAILED {key}: {outcome.failed[key]}")
            return False
        done.add(key)
        outcome.finished.append(key)
        on_event(f"done   {key}")
        return True

    for run in plan.order():
        if run.status == "done":
            continue
        dependency = run.depends_on if run.depends_on and run.depends_on not in done else None
        if slurm:
            extra = dict(options.extra or {})
            if dependency:  # a failed stage-1 job cancels its dependants instead of leaving them pending
                extra.update({"dependency": f"afterok:{jobs[dependency].job_id}", "kill-on-invalid-dep": "yes"})
            executor.update_parameters(slurm_additional_parameters=extra, name=f"oltr-{run.method}-s{run.seed}")
        elif dependency and not result(dependency):
            outcome.skipped.append(run.key)
            on_event(f"skip   {run.key}: its stage-1 run {dependency} failed")
            continue
        argv = run_argv(run, plan.runs_root, plan.quick, gpus=options.gpus_per_job if slurm else 0)
        jobs[run.key] = executor.submit(execute, argv, None, None)
        on_event(f"submit {run.key} (job {jobs[run.key].job_id}" + (f", after {jobs[dependency].job_id})" if slurm and dependency else ")"))
    for key in jobs:
        result(key)
    return outcome


def identify_faces(run_dirs: list[Path], datasets: set[str], on_event: Callable[[str], None] = log.info) -> list[str]:
    """Face identification (``embed`` + ``evaluate-faces``, heldout protocol; SPEC.md §6) of every
    complete run on a face dataset (``datasets``: MS1M-LT) that has no ``face_results.json`` yet,
    in this process (on its GPU when it has one). Returns the runs that failed, each with why."""
    from oltr_bench.engine.embed import identify_run
    from oltr_bench.formats.rundir import RunDir

    failed = []
    for path in run_dirs:
        run = RunDir(path)
        if (run.path / RunDir.FACE_RESULTS).exists() or (run.read_manifest() or {}).get("dataset") not in datasets:
            continue
        on_event(f"faces  {path}")
        try:
            identify_run(path)
        except (OltrError, OSError, RuntimeError) as exc:
            failed.append(f"{path}: {exc}")
            on_event(f"FAILED faces of {path}: {exc}")
    return failed

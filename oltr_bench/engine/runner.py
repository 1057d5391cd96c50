"""``run``: resolve the config, find or build the stage-1 run a stage-2 method needs, run the engine.

Stage-1 lookup: a stage-2 method starts from the newest completed run of its ``init_from``
method on the same split (fingerprint), in the same mode (``--quick`` or not), whose resolved
config equals the config that ``run --method <init_from>`` would use now with the stage-2
run's shared overrides (``seed``, ``model.*`` except ``feat_dim``, ``data.*`` except the
sampler, the global batch and the numerics keys of ``train``; a stage's schedule, learning
rates and ``params`` are its own), ignoring keys that cannot change results
(:data:`~oltr_bench.engine.rundir.NEUTRAL_KEYS`). So a stage-2 run never silently starts from a stage-1 run trained with
another schedule. If there is none, that stage-1 run is trained first. A stage-2 config
may differ from its stage-1 config (DME adds ``fc_add``), so stage-1 runs are matched against
the stage-1 method's own config, never the stage-2 one.

Under torchrun every decision (which run directory, which stage-1 run, whether to resume) is
taken by rank 0 and broadcast, so all processes work on the same directories.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, Sequence

from oltr_bench.config import config_hash, dataset_config, parse_override, resolve_config
from oltr_bench.engine import distributed, rundir
from oltr_bench.engine.distributed import Dist, pick_device
from oltr_bench.engine.trainer import Engine
from oltr_bench.errors import OltrError
from oltr_bench.registry import METHODS
from oltr_bench.splits.format import SplitDir

_STAGE1_SHARED_TRAIN = ("batch_size", "precision", "channels_last", "compile", "sync_bn")
_STAGE1_PRIVATE = {("model", "feat_dim"), ("data", "sampler"), ("data", "samples_per_class")}


def stage1_overrides(overrides: Sequence[str]) -> list[str]:
    """The overrides of a stage-2 run that also apply to the stage-1 run it starts from."""
    shared = []
    for text in overrides:
        path, _ = parse_override(text)
        top = path[0]
        if tuple(path[:2]) in _STAGE1_PRIVATE:
            continue
        if top in ("seed", "model", "data") or (top == "train" and len(path) > 1 and path[1] in _STAGE1_SHARED_TRAIN):
            shared.append(text)
    return shared


def find_stage1(runs_root: Path, split: SplitDir, init_from: str, expected: dict[str, Any], quick: bool) -> Path | None:
    """The newest completed ``init_from`` run on this split whose config matches ``expected``."""
    for run_dir in rundir.find_completed_runs(runs_root, split.dataset, init_from, split_fingerprint=split.fingerprint, quick=quick):
        if rundir.same_config(run_dir, expected) and (run_dir / "checkpoints" / "best.pt").is_file():
            return run_dir
    return None


def check_stage1_dir(path: Path, split: SplitDir, init_from: str, echo: Callable[[str], None]) -> Path:
    """Validate a ``--stage1`` run directory given by the user."""
    manifest = rundir.read_manifest(path)
    if manifest is None or not (path / "checkpoints" / "best.pt").is_file():
        raise OltrError(f"--stage1 {path} is not a run directory (manifest.json or checkpoints/best.pt is missing)")
    if manifest.get("status") != "complete":
        raise OltrError(f"--stage1 {path} did not complete (status {manifest.get('status')!r}); finish it with --resume first")
    if manifest.get("split_fingerprint") != split.fingerprint:
        raise OltrError(f"--stage1 {path} was trained on another split (fingerprint {manifest.get('split_fingerprint')}, "
                        f"expected {split.fingerprint} of {split.path})")
    if manifest.get("method") != init_from:
        echo(f"note: --stage1 {path} is a {manifest.get('method')!r} run; this method normally starts from {init_from!r}")
    return path


def _decide(method: str, cfg: dict[str, Any], split: SplitDir, runs_root: Path, quick: bool, resume: bool,
            stage1: Path | None, overrides: Sequence[str], echo: Callable[[str], None]) -> dict[str, Any]:
    """Rank 0's plan: finished already, resume a run, or start one (after training stage 1 if needed)."""
    method_cls = METHODS.get(method)
    if resume:
        for run_dir in rundir.find_runs(runs_root, split.dataset, method):
            manifest = rundir.read_manifest(run_dir) or {}
            if manifest.get("quick") != quick or manifest.get("split_fingerprint") != split.fingerprint:
                continue
            if not rundir.same_config(run_dir, cfg):
                continue
            if manifest.get("status") == "complete" and (run_dir / "results.json").is_file():
                return {"action": "done", "run_dir": run_dir}
            stage1_run = manifest.get("stage1_run")
            return {"action": "resume", "run_dir": run_dir, "stage1_dir": Path(stage1_run) if stage1_run else None}
        echo(f"--resume: no unfinished {method} run with this config on {split.dataset}; starting a new one")
    if method_cls.stage != 2:
        return {"action": "new", "stage1_dir": None}
    if not method_cls.init_from:
        raise OltrError(f"method {method!r} is stage 2 but names no stage-1 method (init_from)")
    if stage1 is not None:
        return {"action": "new", "stage1_dir": check_stage1_dir(Path(stage1), split, method_cls.init_from, echo)}
    shared = stage1_overrides(overrides)
    init_cls = METHODS.get(method_cls.init_from)
    expected = resolve_config(method_cls.init_from, split.dataset, init_cls.defaults, shared)
    found = find_stage1(runs_root, split, method_cls.init_from, expected, quick)
    if found is not None:
        echo(f"{method} starts from {method_cls.init_from} run {found}")
        return {"action": "new", "stage1_dir": found}
    echo(f"{method} starts from a {method_cls.init_from} run; none matches this split and config, so training it first")
    return {"action": "new", "stage1_dir": None, "train_stage1": shared}


def run_method(
    method: str,
    split: SplitDir,
    *,
    runs_root: Path,
    overrides: Sequence[str] = (),
    quick: bool = False,
    progress: bool = True,
    stage1: Path | None = None,
    resume: bool = False,
    dist: Dist | None = None,
    echo: Callable[[str], None] = print,
) -> Path:
    """Train and evaluate ``method`` on ``split``; return the run directory (on every rank).

    A stage-2 method starts from ``stage1`` if given, else from the matching stage-1 run (see the
    module docstring), which is trained first if none exists. ``resume`` continues the newest
    unfinished run of this method with the same config (or returns it if it already completed).
    """
    dist = dist or Dist(device=pick_device())
    say = echo if dist.is_main else (lambda message: None)
    method = METHODS.canonical(method)
    cfg = resolve_config(method, split.dataset, METHODS.get(method).defaults, overrides)
    _, note = dataset_config(split.dataset, method)
    if note:
        say(f"note: {note}")
    decision = _decide(method, cfg, split, runs_root, quick, resume, stage1, overrides, say) if dist.is_main else None
    decision = distributed.broadcast_object(dist, decision)
    if decision["action"] == "done":
        say(f"{method}: run {decision['run_dir']} is already complete")
        return decision["run_dir"]
    stage1_dir = decision.get("stage1_dir")
    if "train_stage1" in decision:
        stage1_dir = run_method(METHODS.get(method).init_from, split, runs_root=runs_root, overrides=decision["train_stage1"],
                                quick=quick, progress=progress, resume=resume, dist=dist, echo=echo)
    if decision["action"] == "resume":
        run_dir = decision["run_dir"]
    else:
        run_dir = rundir.new_run_dir(runs_root, split.dataset, method, config_hash(cfg)) if dist.is_main else None
        run_dir = distributed.broadcast_object(dist, run_dir)
    say(f"{method}: run directory {run_dir}")
    Engine(cfg, split, run_dir, quick=quick, stage1_dir=stage1_dir, progress=progress, dist=dist,
           resume=decision["action"] == "resume", echo=say).run()
    return run_dir

"""``run``: resolve the config, find or build the stage-1 run a stage-2 method needs, run the engine.

Validation first: the config (and, for a stage-2 method, the stage-1 config it may train) is
checked by :func:`~oltr_bench.engine.build.check_buildable` before any stage-1 run is trained or
any run directory is made, so a bad ``--set`` fails at once and leaves nothing behind. Which
stage-1 run a stage-2 method starts from: :mod:`~oltr_bench.engine.stage1`.

Under torchrun every decision (which run directory, which stage-1 run, whether to resume) is
taken by rank 0 and broadcast, so all processes work on the same directories.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Sequence

from oltr_bench.config import RunConfig, comparable, config_hash, resolve
from oltr_bench.engine import distributed
from oltr_bench.engine.build import check_buildable
from oltr_bench.engine.distributed import Dist, pick_device
from oltr_bench.engine.engine import Engine
from oltr_bench.engine.stage1 import check_stage1_dir, find_stage1, sets_weights, stage1_overrides, stage1_overrides_for  # noqa: F401 (stage1_overrides: re-exported)
from oltr_bench.errors import OltrError
from oltr_bench.formats.rundir import RunDir
from oltr_bench.models.backbones import PRETRAINED_BY_PROTOCOL
from oltr_bench.registry import METHODS
from oltr_bench.splits.format import SplitDir

log = logging.getLogger(__name__)


def same_config_run(cfg: RunConfig, split: SplitDir, runs_root: Path, quick: bool) -> RunDir | None:
    """The newest run (any status) of ``cfg``'s method on ``split`` whose config matches ``cfg``
    (ignoring speed-only keys) in the same mode: what ``--resume`` continues, or finds complete."""
    method_defaults = METHODS.get(cfg.method).defaults
    wanted = comparable(cfg.to_dict(), method_defaults)
    for run in RunDir.find(runs_root, split.dataset, cfg.method):
        manifest = run.read_manifest() or {}
        if manifest.get("quick") != quick or manifest.get("split_fingerprint") != split.fingerprint:
            continue
        found = run.read_config()
        if found is not None and comparable(found, method_defaults) == wanted:
            return run
    return None


def _decide(cfg: RunConfig, split: SplitDir, runs_root: Path, quick: bool, resume: bool, stage1: Path | None,
            overrides: Sequence[str], stage1_cfg: RunConfig | None) -> dict[str, Any]:
    """Rank 0's plan: finished already, resume a run, or start one (after training stage 1 if needed)."""
    method = cfg.method
    method_cls = METHODS.get(method)
    if resume:
        run = same_config_run(cfg, split, runs_root, quick)
        if run is not None:
            if run.is_complete:
                return {"action": "done", "run_dir": run.path}
            stage1_run = (run.read_manifest() or {}).get("stage1_run")
            return {"action": "resume", "run_dir": run.path, "stage1_dir": Path(stage1_run) if stage1_run else None}
        log.info("--resume: no unfinished %s run with this config on %s; starting a new one", method, split.dataset)
    if method_cls.stage != 2:
        return {"action": "new", "stage1_dir": None}
    if not method_cls.init_from:
        raise OltrError(f"method {method!r} is stage 2 but names no stage-1 method (init_from)")
    if stage1 is not None:
        return {"action": "new", "stage1_dir": check_stage1_dir(Path(stage1), split, method_cls.init_from)}
    # Only where the protocol starts the backbone from pretrained weights (Places-LT's ResNet-152) may
    # a stage-1 run given --set model.weights=PATH stand in for a command that does not repeat it:
    # elsewhere a pretrained stage 1 would silently change the protocol.
    relax = not sets_weights(overrides) and stage1_cfg.model.backbone in PRETRAINED_BY_PROTOCOL
    found, why = find_stage1(runs_root, split, method_cls.init_from, stage1_cfg, quick, match_weights=not relax)
    if found is not None:
        log.info("%s starts from %s run %s", method, method_cls.init_from, found)
        return {"action": "new", "stage1_dir": found}
    log.info("%s starts from a %s run; none matches this split and config%s, so training it first", method,
             method_cls.init_from, f" ({why})" if why else "")
    return {"action": "new", "stage1_dir": None, "train_stage1": stage1_overrides_for(method_cls, cfg.params, overrides)}


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
    allow_unsafe_checkpoints: bool = False,
) -> Path:
    """Train and evaluate ``method`` on ``split``; return the run directory (on every rank).

    A stage-2 method starts from ``stage1`` if given, else from the matching stage-1 run
    (:mod:`~oltr_bench.engine.stage1`), which is trained first if none exists. ``resume``
    continues the newest unfinished run of this method with the same config (or returns it if
    it already completed). ``allow_unsafe_checkpoints`` lets format-1 checkpoints (numpy
    arrays pickled beside the tensors) load, still weights-only.
    """
    dist = dist or Dist(device=pick_device())
    method = METHODS.canonical(method)
    method_cls = METHODS.get(method)
    resolved = resolve(method, split.dataset, method_cls.defaults, overrides)
    cfg = resolved.config
    if resolved.note and dist.is_main:
        log.info("note: %s", resolved.note)
    stage2, model = check_buildable(cfg, split, quick=quick)
    stage1_cfg = None
    if method_cls.stage == 2 and method_cls.init_from and stage1 is None:
        # The stage-1 run this may train: a bad shared override fails now, not after stage 1 trained,
        # and so does a stage-2 model that its checkpoint could not initialise (e.g. dme with another
        # model.feat_dim than the stage-1 classifier's input).
        stage1_cfg = resolve(method_cls.init_from, split.dataset, METHODS.get(method_cls.init_from).defaults,
                             stage1_overrides_for(method_cls, cfg.params, overrides)).config
        _, stage1_model = check_buildable(stage1_cfg, split, quick=quick)
        stage2.load_stage1(model, stage1_model.state_dict())
    decision = _decide(cfg, split, runs_root, quick, resume, stage1, overrides, stage1_cfg) if dist.is_main else None
    decision = distributed.broadcast_object(dist, decision)
    if decision["action"] == "done":
        if dist.is_main:
            log.info("%s: run %s is already complete", method, decision["run_dir"])
        return decision["run_dir"]
    stage1_dir = decision.get("stage1_dir")
    if "train_stage1" in decision:
        stage1_dir = run_method(method_cls.init_from, split, runs_root=runs_root, overrides=decision["train_stage1"],
                                quick=quick, progress=progress, resume=resume, dist=dist,
                                allow_unsafe_checkpoints=allow_unsafe_checkpoints)
    if decision["action"] == "resume":
        run_dir = decision["run_dir"]
    else:
        run_dir = RunDir.create(runs_root, split.dataset, method, config_hash(cfg)).path if dist.is_main else None
        run_dir = distributed.broadcast_object(dist, run_dir)
    if dist.is_main:
        log.info("%s: run directory %s", method, run_dir)
    Engine(cfg, split, run_dir, quick=quick, stage1_dir=stage1_dir, progress=progress, dist=dist,
           resume=decision["action"] == "resume", allow_unsafe_checkpoints=allow_unsafe_checkpoints).run()
    return run_dir

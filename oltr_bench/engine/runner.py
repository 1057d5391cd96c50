"""``run``: resolve the config, find or build the stage-1 run a stage-2 method needs, run the engine."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, Sequence

import yaml

from oltr_bench.config import config_hash, resolve_config
from oltr_bench.engine import rundir
from oltr_bench.engine.trainer import Engine
from oltr_bench.errors import OltrError
from oltr_bench.registry import METHODS
from oltr_bench.splits.format import SplitDir

# Config keys that must agree between a stage-2 run and the stage-1 run it starts from.
STAGE1_MATCH = ("model", "seed")


def stage1_config_matches(stage1_cfg: dict[str, Any], cfg: dict[str, Any]) -> bool:
    return all(stage1_cfg.get(k) == cfg.get(k) for k in STAGE1_MATCH)


def find_stage1(runs_root: Path, split: SplitDir, init_from: str, cfg: dict[str, Any], quick: bool) -> Path | None:
    for run_dir in rundir.find_completed_runs(runs_root, split.dataset, init_from, split_fingerprint=split.fingerprint, quick=quick):
        stage1_cfg = yaml.safe_load((run_dir / "config.yaml").read_text(encoding="utf-8"))
        if stage1_config_matches(stage1_cfg, cfg):
            return run_dir
    return None


def run_method(
    method: str,
    split: SplitDir,
    *,
    runs_root: Path,
    overrides: Sequence[str] = (),
    quick: bool = False,
    progress: bool = True,
    stage1: Path | None = None,
    echo: Callable[[str], None] = print,
) -> Path:
    """Train and evaluate ``method`` on ``split``; return the run directory.

    A stage-2 method starts from ``stage1`` if given, else from the newest completed run of its
    ``init_from`` method on the same split with the same model and seed; if there is none, that
    stage-1 run is trained first (with the same overrides of shared keys).
    """
    method = METHODS.canonical(method)
    method_cls = METHODS.get(method)
    cfg = resolve_config(method, split.dataset, method_cls.defaults, overrides)
    stage1_dir = None
    if method_cls.stage == 2:
        if not method_cls.init_from:
            raise OltrError(f"method {method!r} is stage 2 but names no stage-1 method (init_from)")
        if stage1 is not None:
            stage1_dir = Path(stage1)
            if not (stage1_dir / "checkpoints" / "best.pt").is_file():
                raise OltrError(f"--stage1 {stage1_dir} is not a completed run directory (checkpoints/best.pt is missing)")
        else:
            stage1_dir = find_stage1(runs_root, split, method_cls.init_from, cfg, quick)
            if stage1_dir is None:
                echo(f"{method} starts from a {method_cls.init_from} run; none matches this split, model and seed, so training it first")
                shared = [o for o in overrides if o.split("=", 1)[0].split(".")[0] in STAGE1_MATCH]
                stage1_dir = run_method(
                    method_cls.init_from, split, runs_root=runs_root, overrides=shared, quick=quick, progress=progress, echo=echo
                )
            else:
                echo(f"{method} starts from {method_cls.init_from} run {stage1_dir}")
    run_dir = rundir.new_run_dir(runs_root, split.dataset, method, config_hash(cfg))
    echo(f"{method}: run directory {run_dir}")
    Engine(cfg, split, run_dir, quick=quick, stage1_dir=stage1_dir, progress=progress).run()
    return run_dir

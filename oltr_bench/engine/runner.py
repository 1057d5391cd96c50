"""``run``: resolve the config, find or build the stage-1 run a stage-2 method needs, run the engine.

Validation first: the config (and, for a stage-2 method, the stage-1 config it may train) is
checked by :func:`~oltr_bench.engine.trainer.validate_config` before any stage-1 run is trained
or any run directory is made, so a bad ``--set`` fails at once and leaves nothing behind.

Stage-1 lookup: a stage-2 method starts from the newest completed run of its ``init_from``
method on the same split (fingerprint), in the same mode (``--quick`` or not), whose resolved
config equals the config that ``run --method <init_from>`` would use now with the stage-2
run's shared overrides (``seed``, ``model.*`` except ``feat_dim``, ``data.*`` except the
sampler, the global batch and the numerics keys of ``train``, ``lr_scaling``, and the
speed-only ``eval.batch_size`` and ``log.*``; a stage's schedule, learning rates and ``params``
are its own), ignoring keys that cannot change results
(:data:`~oltr_bench.engine.rundir.NEUTRAL_KEYS`). So a stage-2 run never silently starts from a stage-1 run trained with
another schedule. For a backbone the protocol starts from pretrained weights (ResNet-152,
Places-LT) ``model.weights`` counts only when the stage-2 command sets it: stage 2 overwrites
the backbone with stage 1's weights anyway, and Places-LT's stage 1 needs
``--set model.weights=PATH`` that ``run --method dme`` should not have to repeat (a run that had
weights is preferred). Elsewhere it must match, so a from-scratch protocol never silently starts
from a pretrained stage 1. If there is none, that stage-1 run is trained first, and the message
names the keys in which the newest candidate differs. A stage-2 config
may differ from its stage-1 config (DME adds ``fc_add``), so stage-1 runs are matched against
the stage-1 method's own config, never the stage-2 one.

Under torchrun every decision (which run directory, which stage-1 run, whether to resume) is
taken by rank 0 and broadcast, so all processes work on the same directories.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, Sequence

import yaml

from oltr_bench.config import config_hash, dataset_config, parse_override, resolve_config
from oltr_bench.engine import distributed, rundir
from oltr_bench.engine.distributed import Dist, pick_device
from oltr_bench.engine.trainer import Engine, validate_config
from oltr_bench.errors import OltrError
from oltr_bench.models.backbones import PRETRAINED_BY_PROTOCOL
from oltr_bench.registry import METHODS
from oltr_bench.splits.format import SplitDir

_STAGE1_SHARED_TRAIN = ("batch_size", "lr_scaling", "precision", "channels_last", "compile", "sync_bn")
_STAGE1_PRIVATE = {("model", "feat_dim"), ("data", "sampler"), ("data", "samples_per_class")}
_WEIGHTS = ("model", "weights")


def stage1_overrides(overrides: Sequence[str]) -> list[str]:
    """The overrides of a stage-2 run that also apply to the stage-1 run it starts from."""
    shared = []
    for text in overrides:
        path, _ = parse_override(text)
        top = path[0]
        if tuple(path[:2]) in _STAGE1_PRIVATE:
            continue
        if top in ("seed", "model", "data", "log") or (top == "train" and len(path) > 1 and path[1] in _STAGE1_SHARED_TRAIN) \
                or tuple(path) == ("eval", "batch_size"):
            shared.append(text)
    return shared


def _run_config(run_dir: Path) -> dict[str, Any] | None:
    try:
        cfg = yaml.safe_load((run_dir / "config.yaml").read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError):
        return None
    return cfg if isinstance(cfg, dict) else None


def _flat(cfg: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in cfg.items():
        if isinstance(value, dict) and value:
            out.update(_flat(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out


def config_differences(found: dict[str, Any], expected: dict[str, Any]) -> list[str]:
    """``key: found -> expected`` for every dotted key whose value differs."""
    a, b = _flat(found), _flat(expected)

    def show(flat: dict[str, Any], key: str) -> str:
        return repr(flat[key]) if key in flat else "(absent)"

    return [f"{k}: {show(a, k)} -> {show(b, k)}" for k in sorted(set(a) | set(b))
            if (k in a) != (k in b) or a.get(k) != b.get(k)]


def find_stage1(runs_root: Path, split: SplitDir, init_from: str, expected: dict[str, Any], quick: bool,
                match_weights: bool = True) -> tuple[Path | None, str | None]:
    """The newest completed ``init_from`` run on this split whose config matches ``expected``, or None
    and, if there are other completed runs, how the newest of them differs.

    ``match_weights`` False: ``model.weights`` may differ, and a run that had weights is preferred.
    """
    def comparable(cfg: dict[str, Any]) -> dict[str, Any]:
        out = rundir.comparable(cfg)
        if not match_weights:
            out.get(_WEIGHTS[0], {}).pop(_WEIGHTS[1], None)
        return out

    candidates = []
    for run_dir in rundir.find_completed_runs(runs_root, split.dataset, init_from, split_fingerprint=split.fingerprint, quick=quick):
        cfg = _run_config(run_dir)
        if cfg is not None and (run_dir / "checkpoints" / "best.pt").is_file():
            candidates.append((run_dir, cfg))
    wanted = comparable(expected)
    matches = [(d, cfg) for d, cfg in candidates if comparable(cfg) == wanted]
    if matches:
        with_weights = [d for d, cfg in matches if cfg.get("model", {}).get("weights")]
        return (with_weights or [matches[0][0]])[0], None
    if not candidates:
        return None, None
    newest, cfg = candidates[0]
    differences = config_differences(comparable(cfg), wanted)
    shown = "; ".join(differences[:6]) + (f"; and {len(differences) - 6} more" if len(differences) > 6 else "")
    return None, f"the newest {init_from} run, {newest}, differs in {shown}"


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
            stage1: Path | None, overrides: Sequence[str], stage1_cfg: dict[str, Any] | None,
            echo: Callable[[str], None]) -> dict[str, Any]:
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
    # Only where the protocol starts the backbone from pretrained weights (Places-LT's ResNet-152) may
    # a stage-1 run given --set model.weights=PATH stand in for a command that does not repeat it:
    # elsewhere a pretrained stage 1 would silently change the protocol.
    weights_set = any(parse_override(text)[0] == list(_WEIGHTS) for text in overrides)
    relax = not weights_set and stage1_cfg["model"]["backbone"] in PRETRAINED_BY_PROTOCOL
    found, why = find_stage1(runs_root, split, method_cls.init_from, stage1_cfg, quick, match_weights=not relax)
    if found is not None:
        echo(f"{method} starts from {method_cls.init_from} run {found}")
        return {"action": "new", "stage1_dir": found}
    echo(f"{method} starts from a {method_cls.init_from} run; none matches this split and config"
         + (f" ({why})" if why else "") + ", so training it first")
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
    allow_unsafe_checkpoints: bool = False,
) -> Path:
    """Train and evaluate ``method`` on ``split``; return the run directory (on every rank).

    A stage-2 method starts from ``stage1`` if given, else from the matching stage-1 run (see the
    module docstring), which is trained first if none exists. ``resume`` continues the newest
    unfinished run of this method with the same config (or returns it if it already completed).
    ``allow_unsafe_checkpoints`` lets checkpoints that need full unpickling (format 1) load.
    """
    dist = dist or Dist(device=pick_device())
    say = echo if dist.is_main else (lambda message: None)
    method = METHODS.canonical(method)
    method_cls = METHODS.get(method)
    cfg = resolve_config(method, split.dataset, method_cls.defaults, overrides)
    _, note = dataset_config(split.dataset, method)
    if note:
        say(f"note: {note}")
    stage2, model = validate_config(cfg, split, quick=quick, device=dist.device)
    stage1_cfg = None
    if method_cls.stage == 2 and method_cls.init_from and stage1 is None:
        # The stage-1 run this may train: a bad shared override fails now, not after stage 1 trained,
        # and so does a stage-2 model that its checkpoint could not initialise (e.g. dme with another
        # model.feat_dim than the stage-1 classifier's input).
        stage1_cfg = resolve_config(method_cls.init_from, split.dataset, METHODS.get(method_cls.init_from).defaults,
                                    stage1_overrides(overrides))
        _, stage1_model = validate_config(stage1_cfg, split, quick=quick, device=dist.device)
        stage2.load_stage1(model, stage1_model.state_dict())
    decision = _decide(method, cfg, split, runs_root, quick, resume, stage1, overrides, stage1_cfg, say) if dist.is_main else None
    decision = distributed.broadcast_object(dist, decision)
    if decision["action"] == "done":
        say(f"{method}: run {decision['run_dir']} is already complete")
        return decision["run_dir"]
    stage1_dir = decision.get("stage1_dir")
    if "train_stage1" in decision:
        stage1_dir = run_method(method_cls.init_from, split, runs_root=runs_root, overrides=decision["train_stage1"],
                                quick=quick, progress=progress, resume=resume, dist=dist, echo=echo,
                                allow_unsafe_checkpoints=allow_unsafe_checkpoints)
    if decision["action"] == "resume":
        run_dir = decision["run_dir"]
    else:
        run_dir = rundir.new_run_dir(runs_root, split.dataset, method, config_hash(cfg)) if dist.is_main else None
        run_dir = distributed.broadcast_object(dist, run_dir)
    say(f"{method}: run directory {run_dir}")
    Engine(cfg, split, run_dir, quick=quick, stage1_dir=stage1_dir, progress=progress, dist=dist,
           resume=decision["action"] == "resume", echo=say, allow_unsafe_checkpoints=allow_unsafe_checkpoints).run()
    return run_dir

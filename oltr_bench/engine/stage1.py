"""The stage-1 run a stage-2 method starts from: which overrides it shares, and finding it.

A stage-2 method starts from the newest completed run of its ``init_from`` method on the same
split (fingerprint), in the same mode (``--quick`` or not), whose resolved config equals the
config that ``run --method <init_from>`` would use now with the stage-2 command's shared
overrides (the keys the schema marks ``stage1``: ``seed``, the backbone but ``model.feat_dim``,
the data but the sampler, the global batch and numerics of ``train``, ``lr_scaling``, and the
speed-only ``eval.batch_size`` and ``log.*``; a stage's schedule, learning rates and ``params``
are its own), ignoring keys that cannot change results (:data:`~oltr_bench.config.NEUTRAL_KEYS`).
So a stage-2 run never silently starts from a stage-1 run trained with another schedule.

For a backbone the protocol starts from pretrained weights (ResNet-152, Places-LT)
``model.weights`` counts only when the stage-2 command sets it: stage 2 overwrites the backbone
with stage 1's weights anyway, and Places-LT's stage 1 needs ``--set model.weights=PATH`` that
``run --method dme`` should not have to repeat (a run that had weights is preferred). Elsewhere it
must match, so a from-scratch protocol never silently starts from a pretrained stage 1. A
stage-2 config may differ from its stage-1 config (DME adds ``fc_add``), so stage-1 runs are
matched against the stage-1 method's own config, never the stage-2 one.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any, Sequence

from oltr_bench.config import RunConfig, comparable, parse_override, shared_with_stage1
from oltr_bench.errors import OltrError
from oltr_bench.formats.rundir import RunDir
from oltr_bench.registry import METHODS
from oltr_bench.splits.format import SplitDir

log = logging.getLogger(__name__)
WEIGHTS = ("model", "weights")


def stage1_overrides(overrides: Sequence[str]) -> list[str]:
    """The overrides of a stage-2 run that also apply to the stage-1 run it starts from."""
    return [text for text in overrides if shared_with_stage1(parse_override(text)[0])]


def stage1_overrides_for(method_cls: Any, params: dict[str, Any], overrides: Sequence[str]) -> list[str]:
    """The overrides of the stage-1 run a stage-2 configuration starts from: the shared ones of
    :func:`stage1_overrides` and the stage-1 ``params`` the method asks for (``stage1_params``)."""
    wanted = method_cls.stage1_params(params)
    return [*stage1_overrides(overrides), *(f"params.{key}={json.dumps(value)}" for key, value in wanted.items())]


def sets_weights(overrides: Sequence[str]) -> bool:
    return any(parse_override(text)[0] == list(WEIGHTS) for text in overrides)


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


def find_stage1(runs_root: Path, split: SplitDir, init_from: str, expected: RunConfig, quick: bool,
                match_weights: bool = True) -> tuple[Path | None, str | None]:
    """The newest completed ``init_from`` run on this split whose config matches ``expected``, or None
    and, if there are other completed runs, how the newest of them differs.

    ``match_weights`` False: ``model.weights`` may differ, and a run that had weights is preferred.
    """
    method_defaults = METHODS.get(init_from).defaults

    def key(cfg: dict[str, Any]) -> dict[str, Any]:
        out = comparable(cfg, method_defaults)
        if not match_weights:
            out.get(WEIGHTS[0], {}).pop(WEIGHTS[1], None)
        return out

    candidates = []
    for run in RunDir.find_completed(runs_root, split.dataset, init_from, split_fingerprint=split.fingerprint, quick=quick):
        cfg = run.read_config()
        if cfg is not None and run.checkpoint("best").is_file():
            candidates.append((run, cfg))
    wanted = key(expected.to_dict())
    matches = [(run, cfg) for run, cfg in candidates if key(cfg) == wanted]
    if matches:
        with_weights = [run for run, cfg in matches if (cfg.get("model") or {}).get("weights")]
        return (with_weights or [matches[0][0]])[0].path, None
    if not candidates:
        return None, None
    newest, cfg = candidates[0]
    differences = config_differences(key(cfg), wanted)
    shown = "; ".join(differences[:6]) + (f"; and {len(differences) - 6} more" if len(differences) > 6 else "")
    return None, f"the newest {init_from} run, {newest.path}, differs in {shown}"


def check_stage1_dir(path: Path, split: SplitDir, init_from: str) -> Path:
    """Validate a ``--stage1`` run directory given by the user."""
    run = RunDir(path)
    manifest = run.read_manifest()
    if manifest is None or not run.checkpoint("best").is_file():
        raise OltrError(f"--stage1 {path} is not a run directory (manifest.json or checkpoints/best.pt is missing)")
    if manifest.get("status") != "complete":
        raise OltrError(f"--stage1 {path} did not complete (status {manifest.get('status')!r}); finish it with --resume first")
    if manifest.get("split_fingerprint") != split.fingerprint:
        raise OltrError(f"--stage1 {path} was trained on another split (fingerprint {manifest.get('split_fingerprint')}, "
                        f"expected {split.fingerprint} of {split.path})")
    if manifest.get("method") != init_from:
        log.info("note: --stage1 %s is a %r run; this method normally starts from %r", path, manifest.get("method"), init_from)
    return path

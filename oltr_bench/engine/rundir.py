"""Run directories: layout, manifest and lookup of earlier runs.

``<runs>/<dataset>/<method>/<YYYYmmdd-HHMMSS>-<config hash>/`` holds ``config.yaml`` (the resolved
config), ``manifest.json`` (provenance and status), ``train_log.jsonl``, ``checkpoints/``,
``predictions/{val,test}.npz`` and, written last, ``results.json``. The manifest's ``status`` is
``running`` until the run completes; a crashed run keeps ``running``/``failed`` and has no
``results.json`` (``--resume`` continues it from ``checkpoints/last.pt``).
"""

from __future__ import annotations

import copy
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import yaml

from oltr_bench import __version__
from oltr_bench.errors import OltrError
from oltr_bench.utils.io import atomic_write_json, atomic_write_text

RUN_FORMAT = "oltr-bench-run/1"


def new_run_dir(runs_root: Path, dataset: str, method: str, config_hash: str) -> Path:
    base = runs_root / dataset / method
    stamp = time.strftime("%Y%m%d-%H%M%S")
    path = base / f"{stamp}-{config_hash[:8]}"
    n = 1
    while path.exists():
        n += 1
        path = base / f"{stamp}-{config_hash[:8]}-{n}"
    try:
        path.mkdir(parents=True)
    except OSError as exc:
        raise OltrError(f"--out {runs_root}: cannot create the run directory {path} ({exc.strerror}); "
                        "expected a writable folder") from None
    return path


def git_sha() -> str | None:
    """The git commit of the oltr-bench source tree, if it is a git checkout."""
    here = Path(__file__).resolve().parent
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=here, capture_output=True, text=True, timeout=5, check=True
        ).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain"], cwd=here, capture_output=True, text=True, timeout=5).stdout.strip()
        return out + ("-dirty" if dirty else "")
    except (OSError, subprocess.SubprocessError):
        return None


def package_versions() -> dict[str, str]:
    import numpy
    import torch
    import torchvision

    return {
        "oltr_bench": __version__,
        "python": sys.version.split()[0],
        "torch": torch.__version__,
        "torchvision": torchvision.__version__,
        "numpy": numpy.__version__,
        "platform": platform.platform(),
    }


def device_info(device) -> dict[str, Any]:
    """The device a run used, in words (GPU model, or the CPU model and core count)."""
    import torch

    info: dict[str, Any] = {"type": device.type, "cpu_cores": os.cpu_count()}
    if device.type == "cuda":
        info["name"] = torch.cuda.get_device_name(device)
        info["memory_gib"] = round(torch.cuda.get_device_properties(device).total_memory / 2**30, 1)
    else:
        info["name"] = _cpu_name()
    return info


def _cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text(encoding="utf-8").splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def model_cost(model, input_size: int, device) -> dict[str, Any]:
    """Parameters and multiply-accumulates of one forward pass of one image (``FlopCounterMode`` / 2)."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    was_training = model.training
    model.eval()
    counter = FlopCounterMode(display=False)
    with torch.no_grad(), counter:
        model(torch.zeros(1, 3, input_size, input_size, device=device))
    model.train(was_training)
    return {
        "parameters": sum(p.numel() for p in model.parameters()),
        "trainable_parameters": sum(p.numel() for p in model.parameters() if p.requires_grad),
        "macs_per_image": counter.get_total_flops() // 2,
        "input": [3, input_size, input_size],
    }


NEUTRAL_KEYS = (("data", "workers"), ("eval", "batch_size"), ("log",))
"""Config keys that change speed or logging, never results: ignored when matching stage-1 runs
and when ``--resume`` looks for the run to continue."""

def _fill_missing(node: dict[str, Any], defaults: dict[str, Any]) -> None:
    for key, value in defaults.items():
        if key not in node:
            node[key] = copy.deepcopy(value)
        elif isinstance(node[key], dict) and isinstance(value, dict):
            _fill_missing(node[key], value)


def comparable(cfg: dict[str, Any]) -> dict[str, Any]:
    """``cfg`` without :data:`NEUTRAL_KEYS`, with keys added to the defaults since it was written
    filled in with their default values (a run written before ``train.scheduler.name`` existed
    trained with the default ``step``, so it still matches a config that says so)."""
    from oltr_bench.config import configs_dir, read_yaml
    from oltr_bench.registry import METHODS

    out = copy.deepcopy(cfg)
    _fill_missing(out, read_yaml(configs_dir() / "defaults.yaml"))
    if isinstance(out.get("params"), dict) and out.get("method") in METHODS.names():
        _fill_missing(out["params"], METHODS.get(out["method"]).defaults)
    for path in NEUTRAL_KEYS:
        node = out
        for key in path[:-1]:
            node = node.get(key, {})
        node.pop(path[-1], None)
    return out


def same_config(run_dir: Path, cfg: dict[str, Any]) -> bool:
    """Whether the run's ``config.yaml`` equals ``cfg`` up to :data:`NEUTRAL_KEYS`."""
    try:
        run_cfg = yaml.safe_load((run_dir / "config.yaml").read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError):
        return False
    return isinstance(run_cfg, dict) and comparable(run_cfg) == comparable(cfg)


def write_manifest(run_dir: Path, manifest: dict[str, Any]) -> None:
    atomic_write_json(run_dir / "manifest.json", manifest)


def read_manifest(run_dir: Path) -> dict[str, Any] | None:
    try:
        return json.loads((run_dir / "manifest.json").read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        return None


def find_runs(runs_root: Path, dataset: str, method: str) -> list[Path]:
    """Runs of ``method`` on ``dataset`` that have a manifest, any status (newest first)."""
    base = runs_root / dataset / method
    if not base.is_dir():
        return []
    found = [d for d in base.iterdir() if read_manifest(d) is not None]
    return sorted(found, key=lambda p: os.path.getmtime(p / "manifest.json"), reverse=True)


def truncate_log(path: Path, epochs_done: int) -> None:
    """Drop training-log records of epochs after ``epochs_done`` (they are redone on resume)."""
    if not path.is_file():
        return
    kept = []
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            continue  # a line cut by the crash
        if int(record.get("epoch", 0)) <= epochs_done:
            kept.append(line)
    atomic_write_text(path, "".join(f"{line}\n" for line in kept))


def find_completed_runs(runs_root: Path, dataset: str, method: str, **match: Any) -> list[Path]:
    """Completed runs of ``method`` on ``dataset`` whose manifest matches ``match`` (newest first)."""
    base = runs_root / dataset / method
    if not base.is_dir():
        return []
    found = []
    for run_dir in base.iterdir():
        manifest = read_manifest(run_dir)
        if not manifest or manifest.get("status") != "complete" or not (run_dir / "results.json").is_file():
            continue
        if all(manifest.get(k) == v for k, v in match.items()):
            found.append(run_dir)
    return sorted(found, key=lambda p: os.path.getmtime(p / "results.json"), reverse=True)

"""Provenance: what a run's ``manifest.json`` records about the code, the machine and the setup.

:func:`start_manifest` is the manifest as a run starts (status ``running``); the engine adds the
training summary, the time per phase and the caches as the run goes, and the status at the end.
"""

from __future__ import annotations

import os
import platform
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import torch

from oltr_bench import __version__, formats
from oltr_bench.config import RunConfig, config_hash


def git_sha() -> str | None:
    """The git commit of the oltr-bench source tree, if it is a git checkout (``-dirty`` with changes)."""
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
    import torchvision

    return {
        "oltr_bench": __version__,
        "python": sys.version.split()[0],
        "torch": torch.__version__,
        "torchvision": torchvision.__version__,
        "numpy": numpy.__version__,
        "platform": platform.platform(),
    }


def device_info(device: torch.device) -> dict[str, Any]:
    """The device a run used, in words (GPU model, or the CPU model, core count and torch's thread
    count: on the CPU the thread count changes the order of sums, so a run is reproduced bit for bit
    only with the same count; ``suite --jobs N`` gives each run cores/N)."""
    info: dict[str, Any] = {"type": device.type, "cpu_cores": os.cpu_count()}
    if device.type == "cuda":
        info["name"] = torch.cuda.get_device_name(device)
        info["memory_gib"] = round(torch.cuda.get_device_properties(device).total_memory / 2**30, 1)
    else:
        info["name"] = _cpu_name()
        info["cpu_threads"] = torch.get_num_threads()
    return info


def _cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text(encoding="utf-8").splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def model_cost(model: torch.nn.Module, input_size: int, device: torch.device) -> dict[str, Any]:
    """Parameters and multiply-accumulates of one forward pass of one image (``FlopCounterMode`` / 2)."""
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


def now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S%z")


def start_manifest(engine: Any, plan: dict[str, int] | None, lr: dict[str, float], factor: float) -> dict[str, Any]:
    """The manifest of ``engine``'s run as it starts (the engine's config, split, method, model and device)."""
    cfg: RunConfig = engine.cfg
    train = cfg.train
    split = engine.split
    return {
        "format": formats.RUN,
        "status": "running",
        "method": cfg.method,
        "dataset": split.dataset,
        "split_dir": str(split.path.resolve()),
        "split_fingerprint": split.fingerprint,
        "config_hash": config_hash(cfg),
        "quick": engine.quick,
        "stage": engine.method.stage,
        "stage1_run": str(engine.stage1_dir.resolve()) if engine.stage1_dir else None,
        "git_sha": git_sha(),
        "versions": package_versions(),
        "device": device_info(engine.device),
        "world_size": engine.world_size,
        "distributed_backend": engine.dist.backend,
        "batch_size": plan["batch_size"] if plan else train.batch_size,
        "per_process_batch_size": plan["per_process_batch"] if plan else None,
        "reference_batch_size": train.reference_batch_size,
        "lr_scaling": train.lr_scaling,
        "lr_scale_factor": factor,
        "configured_lr": {"features": train.lr.features, "classifier": train.lr.classifier},
        "effective_lr": lr,
        "profile": cfg.profile,
        "precision": "bf16 autocast" if engine.amp_dtype is not None else "fp32",
        "tf32": train.tf32,
        "channels_last": train.channels_last,
        "compile": train.compile,
        "sync_bn": train.sync_bn and engine.dist.enabled,
        "sampler": engine.sampler_kind,
        "seeds": {"train": cfg.seed, "split": split.manifest.get("source", {}).get("seed")},
        "data": {"pipeline": cfg.data.pipeline, "decode": cfg.data.decode, "image_cache": cfg.data.image_cache,
                 "skip_corrupt": cfg.data.skip_corrupt},
        "model": model_cost(engine.model, cfg.data.image_size, engine.device),  # the size the network sees
        "started": now(),
    }

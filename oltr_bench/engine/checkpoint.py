"""Checkpoints: written atomically, complete enough to continue a run exactly.

``checkpoints/last.pt`` (after every epoch) holds the model, the method's own state, every
optimiser and scheduler, the sampler stream, the random-number generators (torch CPU and
CUDA, numpy, Python), the best-epoch record and the epoch count. ``checkpoints/best.pt`` holds
the model and method state of the best validation epoch, rewritten at the end of the run with
the state ``Method.fit`` produced (what stage 2 and the final evaluation use). A file is written to a temporary sibling and renamed, so a crash leaves the
previous checkpoint intact, never half of a new one.
"""

from __future__ import annotations

import io
import random
from pathlib import Path
from typing import Any

import numpy as np
import torch

from oltr_bench.errors import OltrError
from oltr_bench.utils.io import atomic_write_bytes

FORMAT = "oltr-bench-checkpoint/1"


def rng_state() -> dict[str, Any]:
    state = {"torch": torch.get_rng_state(), "numpy": np.random.get_state(), "python": random.getstate()}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    np.random.set_state(state["numpy"])
    random.setstate(state["python"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def cpu_state(module_state: dict[str, Any]) -> dict[str, Any]:
    return {k: v.detach().cpu() if isinstance(v, torch.Tensor) else v for k, v in module_state.items()}


def save(path: Path, payload: dict[str, Any]) -> None:
    buffer = io.BytesIO()
    torch.save({"format": FORMAT, **payload}, buffer)
    atomic_write_bytes(path, buffer.getvalue())


def load(path: Path, map_location: torch.device | str = "cpu") -> dict[str, Any]:
    """A checkpoint written by :func:`save` (our own files, so full unpickling is allowed)."""
    if not Path(path).is_file():
        raise OltrError(f"checkpoint {path} does not exist")
    try:
        state = torch.load(path, map_location=map_location, weights_only=False)
    except Exception as exc:  # torch raises many types for a damaged file
        raise OltrError(f"checkpoint {path} cannot be read: {exc}") from None
    if not isinstance(state, dict) or "model" not in state:
        raise OltrError(f"{path} is not an oltr-bench checkpoint (no 'model' entry)")
    return state

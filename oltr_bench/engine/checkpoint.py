"""Checkpoints: written atomically, complete enough to continue a run exactly, read without running code.

``checkpoints/last.pt`` (after every epoch) holds the model, the method's own state, every
optimiser and scheduler, the sampler stream, the random-number generators (torch CPU and
CUDA, numpy, Python), the best-epoch record and the epoch count. ``checkpoints/best.pt`` holds
the model and method state of the best validation epoch, rewritten at the end of the run with
the state ``Method.fit`` produced (what stage 2 and the final evaluation use). A file is written
to a temporary sibling and renamed, so a crash leaves the previous checkpoint intact, never half
of a new one.

Checkpoints travel: stage-2 runs start from stage-1 runs that people pass around. So a
checkpoint is read with ``torch.load(weights_only=True)``, which restores tensors and plain
Python values (dicts, lists, tuples, str, numbers, bytes) and never calls code named in the
file. What is not a tensor is stored in such values: numpy arrays (the numpy RNG state, sampler
orders) as ``{"__ndarray__": bytes, "dtype", "shape"}`` and numpy scalars as Python numbers
(:func:`encode` / :func:`decode`). Format 1 checkpoints (oltr-bench before this rule) pickled
numpy objects; they load only with ``allow_unsafe=True`` (``run --allow-unsafe-checkpoints``),
and then still with ``weights_only=True``: the only globals added to its allowlist are numpy's
array, scalar and dtype reconstructors (data, no code). Nothing here unpickles with
``weights_only=False``.
"""

from __future__ import annotations

import io
import logging
import pickle
import random
from pathlib import Path
from typing import Any

import numpy as np
import torch

from oltr_bench import formats
from oltr_bench.errors import OltrError
from oltr_bench.utils.io import atomic_write_bytes

UNSAFE_FLAG = "--allow-unsafe-checkpoints"
_ARRAY = "__ndarray__"

log = logging.getLogger(__name__)


def encode(obj: Any) -> Any:
    """``obj`` in values ``torch.load(weights_only=True)`` restores: numpy arrays become tagged bytes,
    numpy scalars Python numbers; containers are encoded recursively (tensors are kept)."""
    if isinstance(obj, np.ndarray):
        if obj.dtype.hasobject:
            raise TypeError("object arrays cannot be stored in a checkpoint")
        return {_ARRAY: np.ascontiguousarray(obj).tobytes(), "dtype": obj.dtype.str, "shape": list(obj.shape)}
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, dict):
        return {encode(k): encode(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return type(obj)(encode(v) for v in obj)
    return obj


def decode(obj: Any) -> Any:
    """The inverse of :func:`encode` (plain values pass through unchanged)."""
    if isinstance(obj, dict):
        if _ARRAY in obj and set(obj) == {_ARRAY, "dtype", "shape"}:
            return np.frombuffer(obj[_ARRAY], dtype=np.dtype(obj["dtype"])).reshape(obj["shape"]).copy()
        return {k: decode(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return type(obj)(decode(v) for v in obj)
    return obj


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
    torch.save(encode({"format": formats.CHECKPOINT, **payload}), buffer)
    atomic_write_bytes(path, buffer.getvalue())


def load(path: Path, map_location: torch.device | str = "cpu", *, allow_unsafe: bool = False) -> dict[str, Any]:
    """A checkpoint, read with ``weights_only=True`` (no code from the file runs).

    A file that names Python globals (an oltr-bench format 1 checkpoint, or a file from elsewhere)
    is refused unless ``allow_unsafe``, and then read as format 1: weights-only with numpy's data
    types allowed (:func:`_load_format1`); any other global is still refused.
    """
    if not Path(path).is_file():
        raise OltrError(f"checkpoint {path} does not exist")
    try:
        state = torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as exc:
        if not allow_unsafe:
            raise OltrError(
                f"checkpoint {path} holds Python objects that only full unpickling restores, and unpickling a file can "
                f"run code from it ({str(exc).splitlines()[-1].strip()[:200]}). If you wrote it yourself with an older "
                f"oltr-bench (checkpoint format 1), pass {UNSAFE_FLAG} to load it anyway; never do so for a file from "
                "someone else. Otherwise train the run again") from None
        log.warning("loading %s as a format-1 checkpoint (%s): numpy arrays allowed, nothing else", path, UNSAFE_FLAG)
        state = _load_format1(path, map_location)
    except Exception as exc:  # torch raises many types for a damaged file
        raise OltrError(f"checkpoint {path} cannot be read: {exc}") from None
    if not isinstance(state, dict) or "model" not in state:
        raise OltrError(f"{path} is not an oltr-bench checkpoint (no 'model' entry)")
    return decode(state)


def _numpy_globals() -> list[Any]:
    """What a pickled numpy array, scalar or dtype names: constructors of data, which run no code."""
    multiarray = getattr(np, "_core", None) or np.core  # numpy 2 / numpy 1
    dtype_classes = {type(np.dtype(code)) for code in np.typecodes["All"]}
    return [multiarray.multiarray._reconstruct, multiarray.multiarray.scalar, np.ndarray, np.dtype,
            *sorted(dtype_classes, key=str)]


def _load_format1(path: Path, map_location: torch.device | str) -> Any:
    """A format-1 checkpoint: numpy objects pickled beside the tensors, read with ``weights_only=True``
    and numpy's data constructors allowed; a file that names any other global is refused."""
    try:
        with torch.serialization.safe_globals(_numpy_globals()):
            return torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as exc:
        raise OltrError(f"checkpoint {path} names Python objects other than numpy arrays; it is not a checkpoint "
                        f"oltr-bench wrote, and it is not loaded ({str(exc).splitlines()[-1].strip()[:200]})") from None
    except Exception as exc:  # noqa: BLE001 - a damaged file
        raise OltrError(f"checkpoint {path} cannot be read: {exc}") from None

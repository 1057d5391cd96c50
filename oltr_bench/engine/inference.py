"""Batched inference: the one loop behind validation, prediction and the feature cache.

:func:`infer` runs a forward function over input batches in evaluation mode, without gradients,
under the run's autocast, and yields each batch's outputs as float32 CPU tensors; :func:`collect`
concatenates them. Under torchrun each rank infers its contiguous share of a split
(:func:`share`) and :func:`gather` puts the whole split, in list order, on every rank.
"""

from __future__ import annotations

import contextlib
from typing import Any, Callable, Iterable, Iterator

import torch

from oltr_bench.engine import distributed
from oltr_bench.engine.distributed import Dist
from oltr_bench.errors import OltrError

Forward = Callable[[torch.Tensor], "dict[str, torch.Tensor] | torch.Tensor"]


def share(n: int, dist: Dist) -> list[int]:
    """This rank's contiguous share of positions ``0..n-1``."""
    per = -(-n // dist.world_size)
    return list(range(dist.rank * per, min(n, (dist.rank + 1) * per)))


@torch.no_grad()
def infer(forward: Forward, batches: Iterable[tuple[torch.Tensor, Any]],
          autocast: Callable[[], contextlib.AbstractContextManager]) -> Iterator[tuple[dict[str, torch.Tensor], Any]]:
    """``(outputs, meta)`` for each ``(input, meta)`` batch: ``forward(input)`` under ``autocast``,
    every output as a float32 CPU tensor (a plain tensor output is ``{"out": tensor}``)."""
    for x, meta in batches:
        with autocast():
            out = forward(x)
        if isinstance(out, torch.Tensor):
            out = {"out": out}
        yield {key: value.detach().float().cpu() for key, value in out.items()}, meta


def collect(chunks: dict[str, list[torch.Tensor]], key: str, value: torch.Tensor) -> None:
    chunks.setdefault(key, []).append(value)


def gather(dist: Dist, chunks: dict[str, list[torch.Tensor]]) -> dict[str, torch.Tensor]:
    """Each key's rows of every rank, concatenated in rank order, on every rank."""
    local = {k: torch.cat(v) for k, v in chunks.items()}
    if not dist.enabled:
        if not local:
            raise OltrError("every image of an evaluation split was skipped as unreadable; nothing to evaluate")
        return local
    # Ranks without rows still take part in the gathers, with rank 0's keys and shapes.
    template = distributed.broadcast_object(dist, {k: (tuple(v.shape[1:]), v.dtype) for k, v in local.items()})
    return {k: distributed.gather_rows(dist, local.get(k, torch.zeros((0, *shape), dtype=dtype)))
            for k, (shape, dtype) in template.items()}

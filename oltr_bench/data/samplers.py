"""Training index streams: instance-balanced shuffling and OLTR's class-aware sampler.

An epoch is ``floor(N_train / batch)`` steps whatever the sampler (as in the official code,
which breaks the loop at that step even though its class-aware sampler is much longer).

Class-aware sampling (``data/ClassAwareSampler.py`` of the official code): classes are drawn
cyclically from a shuffled class list, and for each drawn class ``samples_per_class``
consecutive items are taken from that class's own cyclic, shuffled iterator; every list is
reshuffled each time it wraps. Iterator states persist across epochs.

Distributed training and exact resume rest on two rules:

- there is one *global* stream (the same seed on every rank); global batch ``b`` is split into
  ``world_size`` consecutive equal shares and rank ``r`` gets share ``r`` (:func:`shard`), so
  the ranks together see exactly the batches a single process sees;
- the random augmentation of a sample depends only on ``(seed, position in the global stream)``
  (:func:`sample_seeds`), not on the process, worker or device that loads it.

Streams expose ``state_dict``/``load_state_dict`` so a checkpoint taken between epochs
continues the same stream.
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np

from oltr_bench.config.schema import SAMPLERS, one_of
from oltr_bench.errors import OltrError

_MASK64 = (1 << 64) - 1


class _Cycle:
    """An endless iterator over ``items`` that reshuffles at every wrap (and before the first draw)."""

    def __init__(self, items: Sequence[int], rng: np.random.Generator):
        self.items = np.asarray(items, dtype=np.int64)
        self.rng = rng
        self.order = self.items.copy()
        self.pos = len(self.order)

    def next(self) -> int:
        if self.pos >= len(self.order):
            self.order = self.items[self.rng.permutation(len(self.items))]
            self.pos = 0
        value = int(self.order[self.pos])
        self.pos += 1
        return value

    def state(self) -> dict[str, Any]:
        return {"order": self.order.copy(), "pos": self.pos}

    def restore(self, state: dict[str, Any]) -> None:
        self.order = np.asarray(state["order"], dtype=np.int64)
        self.pos = int(state["pos"])


class ClassAwareStream:
    """OLTR's class-aware sampling as an endless stream of dataset indices."""

    kind = "class_aware"

    def __init__(self, labels: Sequence[int], samples_per_class: int, seed: int):
        if samples_per_class < 1:
            raise OltrError(f"data.samples_per_class must be at least 1, found {samples_per_class}")
        self.rng = np.random.default_rng(seed)
        labels = np.asarray(labels)
        classes = np.unique(labels)
        self.samples_per_class = samples_per_class
        self.class_cycle = _Cycle(classes, self.rng)
        self.per_class = {int(c): _Cycle(np.flatnonzero(labels == c), self.rng) for c in classes}
        self.position = 0

    def take(self, n: int) -> np.ndarray:
        out = np.empty(n, dtype=np.int64)
        i = 0
        while i < n:
            cycle = self.per_class[self.class_cycle.next()]
            for _ in range(self.samples_per_class):
                if i == n:
                    break
                out[i] = cycle.next()
                i += 1
        self.position += n
        return out

    def state_dict(self) -> dict[str, Any]:
        return {
            "kind": self.kind, "rng": self.rng.bit_generator.state, "position": self.position,
            "classes": self.class_cycle.state(), "per_class": {c: cyc.state() for c, cyc in self.per_class.items()},
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        _check_kind(self.kind, state)
        self.rng.bit_generator.state = state["rng"]
        self.position = int(state["position"])
        self.class_cycle.restore(state["classes"])
        for c, cyc in self.per_class.items():
            cyc.restore(state["per_class"][c])


class InstanceStream:
    """Instance-balanced sampling: a fresh permutation of the training set each epoch."""

    kind = "instance"

    def __init__(self, num_samples: int, seed: int):
        self.rng = np.random.default_rng(seed)
        self.num_samples = num_samples
        self.position = 0

    def take(self, n: int) -> np.ndarray:
        if n > self.num_samples:
            raise OltrError(f"an instance-sampled epoch cannot take {n} of {self.num_samples} images")
        self.position += n
        return self.rng.permutation(self.num_samples)[:n]

    def state_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "rng": self.rng.bit_generator.state, "position": self.position}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        _check_kind(self.kind, state)
        self.rng.bit_generator.state = state["rng"]
        self.position = int(state["position"])


def _check_kind(kind: str, state: dict[str, Any]) -> None:
    if state.get("kind") != kind:
        raise OltrError(f"the checkpoint's sampler is {state.get('kind')!r} but this run uses {kind!r}; resume with the same config")


def make_stream(kind: str, labels: Sequence[int], samples_per_class: int, seed: int):
    """The stream of sampler ``kind`` (:data:`oltr_bench.config.schema.SAMPLERS`)."""
    one_of(*SAMPLERS)("data.sampler", kind)
    if kind == "class_aware":
        return ClassAwareStream(labels, samples_per_class, seed)
    return InstanceStream(len(labels), seed)


def sample_seeds(seed: int, start: int, n: int) -> np.ndarray:
    """Augmentation seeds of stream positions ``start .. start+n-1`` (splitmix64 of seed and position).

    Non-negative int64 values, independent of how the stream is split over ranks and workers.
    """
    with np.errstate(over="ignore"):
        z = (np.uint64(seed & _MASK64) * np.uint64(0x9E3779B97F4A7C15)) + np.arange(start + 1, start + n + 1, dtype=np.uint64) * np.uint64(0xBF58476D1CE4E5B9)
        z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        z = z ^ (z >> np.uint64(31))
    return (z >> np.uint64(1)).astype(np.int64)


def shard(global_batch: np.ndarray, rank: int, world_size: int) -> np.ndarray:
    """Rank ``rank``'s share of one global batch: the ``rank``-th of ``world_size`` equal consecutive parts."""
    if len(global_batch) % world_size:
        raise OltrError(f"a global batch of {len(global_batch)} cannot be split evenly over {world_size} processes; "
                        f"make train.batch_size a multiple of the world size")
    per = len(global_batch) // world_size
    return global_batch[rank * per:(rank + 1) * per]


def epoch_batches(stream, steps: int, batch: int, seed: int, rank: int = 0, world_size: int = 1) -> list[list[tuple[int, int]]]:
    """The next epoch of the global stream as this rank's batches of ``(dataset index, augmentation seed)``."""
    start = stream.position
    indices = stream.take(steps * batch).reshape(steps, batch)
    seeds = sample_seeds(seed, start, steps * batch).reshape(steps, batch)
    return [
        list(zip(shard(indices[s], rank, world_size).tolist(), shard(seeds[s], rank, world_size).tolist()))
        for s in range(steps)
    ]


class EpochBatches:
    """A loader's batch sampler whose batches are replaced every epoch (so loader workers can persist)."""

    def __init__(self, batches: list[list] | None = None):
        self.batches = batches or []

    def __iter__(self):
        return iter(self.batches)

    def __len__(self) -> int:
        return len(self.batches)

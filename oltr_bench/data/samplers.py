"""Training index streams: instance-balanced shuffling and OLTR's class-aware sampler.

An epoch is ``floor(N_train / batch)`` steps whatever the sampler (as in the official code,
which breaks the loop at that step even though its class-aware sampler is much longer).

Class-aware sampling (``data/ClassAwareSampler.py`` of the official code): classes are drawn
cyclically from a shuffled class list, and for each drawn class ``samples_per_class``
consecutive items are taken from that class's own cyclic, shuffled iterator; every list is
reshuffled each time it wraps. Iterator states persist across epochs.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from oltr_bench.errors import OltrError


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


class ClassAwareStream:
    """OLTR's class-aware sampling as an endless stream of dataset indices."""

    def __init__(self, labels: Sequence[int], samples_per_class: int, seed: int):
        self.rng = np.random.default_rng(seed)
        labels = np.asarray(labels)
        classes = np.unique(labels)
        self.samples_per_class = samples_per_class
        self.class_cycle = _Cycle(classes, self.rng)
        self.per_class = {int(c): _Cycle(np.flatnonzero(labels == c), self.rng) for c in classes}

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
        return out


class InstanceStream:
    """Instance-balanced sampling: a fresh permutation of the training set each epoch."""

    def __init__(self, num_samples: int, seed: int):
        self.rng = np.random.default_rng(seed)
        self.num_samples = num_samples

    def take(self, n: int) -> np.ndarray:
        return self.rng.permutation(self.num_samples)[:n]


def make_stream(kind: str, labels: Sequence[int], samples_per_class: int, seed: int):
    if kind == "class_aware":
        return ClassAwareStream(labels, samples_per_class, seed)
    if kind == "instance":
        return InstanceStream(len(labels), seed)
    raise OltrError(f"data.sampler {kind!r} is not known; expected 'instance' or 'class_aware'")

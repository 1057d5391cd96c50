"""Per-class training counts of a long-tailed split ("profiles").

A profile is either explicit (a list of counts, e.g. the released ImageNet-LT counts, which
reproduces them exactly) or ``pareto``: the expected order statistics of a Pareto (Lomax) sample
with shape ``alpha``, mapped linearly onto ``[min, max]`` and rounded. For ``alpha=6``, 1000
classes, 1280 down to 5 this gives ImageNet-LT's shape: a few hundred many-shot classes (> 100),
about half medium (20-100) and about a sixth few-shot (< 20).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np

from oltr_bench.errors import OltrError


@dataclass(frozen=True)
class Profile:
    """How many training images each known class gets, largest first."""

    kind: str  # "pareto" or "counts"
    alpha: float = 6.0
    max_count: int = 1280
    min_count: int = 5
    counts: tuple[int, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        if self.kind == "counts":
            return {"kind": "counts", "counts": list(self.counts)}
        return {"kind": "pareto", "alpha": self.alpha, "max": self.max_count, "min": self.min_count}

    def class_counts(self, num_classes: int) -> list[int]:
        """Counts sorted from largest to smallest (for ``counts`` profiles: in the given order)."""
        if self.kind == "counts":
            if len(self.counts) != num_classes:
                raise OltrError(f"the count profile has {len(self.counts)} entries but there are {num_classes} classes")
            return list(self.counts)
        return pareto_counts(num_classes, self.alpha, self.max_count, self.min_count)


def pareto_counts(num_classes: int, alpha: float, max_count: int, min_count: int) -> list[int]:
    """Expected order statistics of a Lomax(alpha) sample, rescaled to [min_count, max_count], descending."""
    if num_classes < 1:
        raise OltrError("a profile needs at least one class")
    if not 0 < min_count <= max_count:
        raise OltrError(f"profile bounds must satisfy 0 < min <= max, found min={min_count}, max={max_count}")
    if alpha <= 0:
        raise OltrError(f"Pareto alpha must be positive, found {alpha}")
    if num_classes == 1:
        return [max_count]
    u = (np.arange(num_classes) + 0.5) / num_classes
    x = (1.0 - u) ** (-1.0 / alpha) - 1.0  # Lomax quantiles, ascending
    scaled = min_count + (x - x[0]) / (x[-1] - x[0]) * (max_count - min_count)
    return [int(v) for v in np.rint(scaled[::-1])]


def parse_profile(spec: Sequence[int] | dict[str, Any] | None, default: Profile) -> Profile:
    if spec is None:
        return default
    if isinstance(spec, dict):
        return Profile(
            "pareto",
            alpha=float(spec.get("alpha", default.alpha)),
            max_count=int(spec.get("max", default.max_count)),
            min_count=int(spec.get("min", default.min_count)),
        )
    return Profile("counts", counts=tuple(int(c) for c in spec))

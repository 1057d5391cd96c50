"""Per-class training counts of a long-tailed split ("profiles").

A profile is either explicit (a list of counts in class order, e.g. the released ImageNet-LT or
Places-LT counts, which are then reproduced exactly) or ``pareto``.

The OLTR authors drew the class sizes of ImageNet-LT and Places-LT with numpy from a Pareto
distribution and scaled them so that the largest class has ``max`` images (issue #38 of the OLTR
repository; the generating script was never released, and one random draw differs a lot from the
next). The ``pareto`` profile is the *expected* result of that procedure, so it is deterministic
and reproduces the released shapes:

    count_k = min + (max - min) * (m_k - m_1) / (m_n - m_1),   m_k = E[X_(k) / X_(n)]

where X_(1) <= ... <= X_(n) are the order statistics of ``n`` independent Lomax(alpha) draws
(``numpy.random.pareto``). ``m_k`` is computed by quadrature (see :func:`expected_ratios`).

| profile | images | classes >100 / 20-100 / <20 |
|---|---|---|
| ImageNet-LT released | 115,846 | 385 / 479 / 136 |
| pareto alpha=6, 1000 classes, 1280..5 | 112,711 | 377 / 476 / 147 |
| Places-LT released | 62,500 | 131 / 163 / 71 |
| pareto alpha=1.54, 365 classes, 4980..5 | 59,806 | 130 / 166 / 69 |
| pareto alpha=1.34 (the author's value for the released draw) | 47,985 | 97 / 172 / 96 |
| pareto alpha=6, 365 classes (the paper's "184.5K" draft) | 198,646 | 296 / 57 / 12 |
"""

from __future__ import annotations

import functools
import json
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any, Sequence

import numpy as np
from scipy.special import betaincinv, roots_legendre

from oltr_bench.errors import OltrError
from oltr_bench.protocols import PROTOCOLS
from oltr_bench.splits.scan import read_text

# Quadrature sizes: doubling both changes no count of the profiles above (ratios move < 1e-5).
_MAX_NODES = 200
_RANK_NODES = 64


@dataclass(frozen=True)
class Profile:
    """How many training images each known class gets."""

    kind: str  # "pareto" or "counts"
    alpha: float = 6.0
    max_count: int = 1280
    min_count: int = 5
    counts: tuple[int, ...] = ()
    name: str = ""  # where explicit counts came from (e.g. "released imagenet_lt"), for the manifest

    def to_dict(self) -> dict[str, Any]:
        if self.kind == "counts":
            out: dict[str, Any] = {"kind": "counts", "counts": list(self.counts)}
            if self.name:
                out["name"] = self.name
            return out
        return {"kind": "pareto", "alpha": self.alpha, "max": self.max_count, "min": self.min_count}

    def class_counts(self, num_classes: int) -> list[int]:
        """Pareto: counts from largest to smallest; explicit counts: as given (class order)."""
        if self.kind == "counts":
            what = f"--counts {self.name}" if self.name else "--counts"
            if len(self.counts) != num_classes:
                raise OltrError(
                    f"{what}: found {len(self.counts):,} counts; expected {num_classes:,}, one per class in label order"
                )
            bad = next((i for i, c in enumerate(self.counts) if c < 1), None)
            if bad is not None:
                raise OltrError(f"{what}: entry {bad + 1} is {self.counts[bad]}; expected every count to be at least 1")
            return list(self.counts)
        return pareto_counts(num_classes, self.alpha, self.max_count, self.min_count)


@dataclass(frozen=True)
class PartialPareto:
    """A Pareto profile as given by ``--alpha/--max/--min``: ``None`` where a value was not given.

    The dataset completes it with its defaults (:func:`resolve_profile`): the protocol's profile
    for ImageNet-LT and Places-LT, values fitted to the data for an image-folder dataset.
    """

    alpha: float | None = None
    max_count: int | None = None
    min_count: int | None = None

    def complete(self, alpha: float, max_count: int, min_count: int) -> Profile:
        """The Pareto profile with the given values and these defaults for the others."""
        return Profile(
            "pareto",
            alpha=alpha if self.alpha is None else self.alpha,
            max_count=max_count if self.max_count is None else self.max_count,
            min_count=min_count if self.min_count is None else self.min_count,
        )


def resolve_profile(profile: Profile | PartialPareto | None, default: Profile) -> Profile:
    """The profile to build with: ``profile`` completed from ``default`` (``default`` when none was given)."""
    if profile is None:
        return default
    if isinstance(profile, PartialPareto):
        return profile.complete(default.alpha, default.max_count, default.min_count)
    return profile


@functools.lru_cache(maxsize=8)
def expected_ratios(num_classes: int, alpha: float) -> np.ndarray:
    """``E[X_(k) / X_(n)]`` for k = 1..n (ascending), X_i iid Lomax(alpha); cached, read-only.

    Given the largest draw's CDF value t, the other n-1 draws are iid uniform on (0, t) in CDF
    space, so the k-th smallest is ``Q(t*B)`` with ``B ~ Beta(k, n-k)`` and the Lomax quantile
    ``Q(p) = (1-p)^(-1/alpha) - 1``. The outer integral runs over ``v = t^n`` (uniform), the inner
    one over the Beta quantile; both by Gauss-Legendre.
    """
    n = num_classes
    xq, wq = roots_legendre(_RANK_NODES)
    q, wq = (xq + 1) / 2, wq / 2
    xt, wt = roots_legendre(_MAX_NODES)
    v, wt = (xt + 1) / 2, wt / 2
    ranks = np.arange(1, n)[:, None]
    beta_q = betaincinv(ranks, n - ranks, q[None, :])  # (n-1, nodes)
    ratios = np.zeros(n - 1)
    for t, w in zip(v ** (1.0 / n), wt):
        top = (1.0 - t) ** (-1.0 / alpha) - 1.0
        ratios += w * (((1.0 - t * beta_q) ** (-1.0 / alpha) - 1.0) @ wq) / top
    out = np.append(ratios, 1.0)
    out.flags.writeable = False  # shared by the cache
    return out


def pareto_counts(num_classes: int, alpha: float, max_count: int, min_count: int) -> list[int]:
    """Expected shape of ``num_classes`` Pareto(alpha) class sizes scaled onto [min_count, max_count], descending."""
    return list(_pareto_counts(num_classes, float(alpha), max_count, min_count))


@functools.lru_cache(maxsize=16)
def _pareto_counts(num_classes: int, alpha: float, max_count: int, min_count: int) -> tuple[int, ...]:
    if num_classes < 1:
        raise OltrError("a profile needs at least one class")
    if not 0 < min_count <= max_count:
        raise OltrError(f"profile bounds must satisfy 0 < min <= max, found min={min_count}, max={max_count}")
    if not alpha > 0:
        raise OltrError(f"Pareto alpha must be positive, found {alpha}")
    if num_classes == 1:
        return (max_count,)
    m = expected_ratios(num_classes, alpha)
    scaled = min_count + (m - m[0]) / (m[-1] - m[0]) * (max_count - min_count)
    return tuple(int(v) for v in np.rint(scaled[::-1]))


def fit_pareto_max(capacities: Sequence[int], alpha: float, min_count: int) -> int:
    """The largest ``max`` whose Pareto(alpha) profile down to ``min_count`` fits the classes.

    ``capacities`` are the most training images each class can give. A profile fits when its
    k-th largest count is at most the k-th largest capacity for every k, which is exactly when
    :func:`~oltr_bench.splits.builder.assign_counts` can place every count. Counts grow with
    ``max``, so the largest fitting ``max`` is found by bisection. Returns ``min_count`` when no
    profile fits (a class smaller than ``min_count``; the builder then names it).
    """
    room = np.sort(np.asarray(capacities, dtype=np.int64))[::-1]

    def fits(max_count: int) -> bool:
        return bool((np.asarray(pareto_counts(len(room), alpha, max_count, min_count)) <= room).all())

    low, high = min_count, max(int(room[0]), min_count)
    while low < high:
        middle = (low + high + 1) // 2
        if fits(middle):
            low = middle
        else:
            high = middle - 1
    return low


def shot_groups(counts: Sequence[int]) -> tuple[int, int, int]:
    """Classes in the many, medium and few shot groups of the paper's protocol (``oltr``; for messages)."""
    return PROTOCOLS["oltr"].group_counts(counts)


def released_counts(dataset: str) -> list[int]:
    """Per-class train counts of the released ImageNet-LT or Places-LT lists, in label order."""
    table = json.loads(resources.files("oltr_bench.splits_data").joinpath("released_counts.json").read_text("utf-8"))
    if dataset not in table["counts"]:
        raise OltrError(f"no released counts for {dataset!r}; known: {', '.join(sorted(table['counts']))}")
    return list(table["counts"][dataset])


def read_counts(spec: str, dataset: str | None = None) -> Profile:
    """A count profile from ``--counts``: ``released``, a file of integers, or ``5,7,12,...``."""
    if spec == "released":
        if dataset is None:
            raise OltrError("--counts released is only known for imagenet_lt and places_lt")
        return Profile("counts", counts=tuple(released_counts(dataset)), name=f"released {dataset}")
    path = Path(spec)
    if path.is_file():
        text = read_text(path, "--counts file")
        try:
            values = json.loads(text) if text.lstrip().startswith("[") else text.replace(",", " ").split()
            counts = tuple(int(v) for v in values)
        except (ValueError, TypeError):
            raise OltrError(f"--counts {path}: expected a JSON list or whitespace/comma-separated integers") from None
        return Profile("counts", counts=counts, name=str(path))
    try:
        counts = tuple(int(c) for c in spec.replace(",", " ").split())
    except ValueError:
        raise OltrError(
            f"--counts {spec!r}: expected 'released', a file of integers, or comma-separated integers"
        ) from None
    if not counts:
        raise OltrError("--counts is empty")
    return Profile("counts", counts=counts)

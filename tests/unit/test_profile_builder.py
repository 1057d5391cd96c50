"""Long-tail profiles and the split builder: shape, determinism, disjointness, errors."""

import random

import numpy as np
import pytest

from oltr_bench.errors import OltrError
from oltr_bench.splits.builder import build_lt_split
from oltr_bench.splits.profile import Profile, fit_pareto_max, pareto_counts


def groups(counts):
    n = np.asarray(counts)
    return int((n > 100).sum()), int(((n >= 20) & (n <= 100)).sum()), int((n < 20).sum())


def test_pareto_profile_endpoints_and_shape():
    counts = pareto_counts(1000, 6, 1280, 5)
    assert counts[0] == 1280 and counts[-1] == 5
    assert counts == sorted(counts, reverse=True)
    # ImageNet-LT's shape (released: 115,846 images; 385 / 479 / 136 classes).
    assert sum(counts) == 112_711 and groups(counts) == (377, 476, 147)


def test_places_profile_matches_the_released_shape():
    # Released Places-LT: 62,500 images; 131 / 163 / 71 classes.
    counts = pareto_counts(365, 1.54, 4980, 5)
    assert sum(counts) == 59_806 and groups(counts) == (130, 166, 69)


@pytest.mark.parametrize("n, alpha", [(40, 6.0), (25, 1.3)])
def test_pareto_profile_is_the_expected_scaled_sample(n, alpha):
    """The quadrature equals a Monte Carlo run of the authors' procedure: draw, scale by the maximum."""
    rng = np.random.default_rng(0)
    draws = np.sort(rng.pareto(alpha, size=(200_000, n)), axis=1)
    ratios = (draws / draws[:, -1:]).mean(axis=0)
    mc = 5 + (ratios - ratios[0]) / (1 - ratios[0]) * (500 - 5)
    assert np.abs(np.array(pareto_counts(n, alpha, 500, 5)[::-1]) - mc).max() < 1.0


def test_explicit_counts_are_reproduced_exactly():
    files = {f"c{i}": [f"c{i}/{j}.png" for j in range(40)] for i in range(4)}
    profile = Profile("counts", counts=(7, 3, 12, 1))
    built = build_lt_split(files, ["c0", "c1", "c2", "c3"], [], profile, val_per_class=2, test_per_class=5, open_per_class=None, seed=1)
    assert built.class_counts == [7, 3, 12, 1]
    labels = [label for _, label in built.lists["train"]]
    assert [labels.count(c) for c in range(4)] == [7, 3, 12, 1]


def make_files(n_classes=6, per_class=60):
    return {f"k{i}": [f"k{i}/{j:03d}.png" for j in range(per_class)] for i in range(n_classes)}


def test_builder_is_deterministic_disjoint_and_order_independent():
    files = make_files()
    known, unknown = ["k0", "k1", "k2", "k3"], ["k4", "k5"]
    profile = Profile("pareto", alpha=6, max_count=40, min_count=3)
    a = build_lt_split(files, known, unknown, profile, val_per_class=5, test_per_class=10, open_per_class=7, seed=3)
    shuffled = {k: random.Random(0).sample(v, len(v)) for k, v in reversed(list(files.items()))}
    b = build_lt_split(shuffled, known, unknown, profile, val_per_class=5, test_per_class=10, open_per_class=7, seed=3)
    assert a.lists == b.lists
    c = build_lt_split(files, known, unknown, profile, val_per_class=5, test_per_class=10, open_per_class=7, seed=4)
    assert c.lists != a.lists
    paths = [p for lst in a.lists.values() for p, _ in lst]
    assert len(paths) == len(set(paths))
    assert len(a.lists["open"]) == 14 and {l for _, l in a.lists["open"]} == {-1}
    assert sorted(a.class_counts, reverse=True) == pareto_counts(4, 6, 40, 3)


def test_too_small_class_names_the_class():
    files = make_files(per_class=12)
    with pytest.raises(OltrError, match="class 'k0' .* has 12 images; it needs"):
        build_lt_split(files, ["k0", "k1"], [], Profile("pareto", 6, 40, 3), val_per_class=5, test_per_class=10, open_per_class=None, seed=0)


@pytest.mark.parametrize("args, message", [((0, 6, 10, 1), "at least one class"), ((5, 6, 3, 10), "0 < min <= max"), ((5, -1, 10, 1), "alpha must be positive")])
def test_bad_profiles(args, message):
    with pytest.raises(OltrError, match=message):
        pareto_counts(*args)


@pytest.mark.parametrize(
    "room, alpha, low",
    [
        ([170, 120, 70, 70, 70, 60, 41, 30], 6.0, 5),  # uneven class folders: the largest class alone is not the bound
        ([500] * 10, 6.0, 5),  # even classes: max = their size
        ([3, 900, 40, 41, 200, 12, 7, 650, 90, 5, 33, 18], 1.5, 3),
    ],
)
def test_fitted_max_is_the_largest_that_fits(room, alpha, low):
    """Bisection agrees with a plain scan from the largest class down, and the profile is placeable."""
    fitted = fit_pareto_max(room, alpha, low)

    def fits(m):
        return all(c <= r for c, r in zip(pareto_counts(len(room), alpha, m, low), sorted(room, reverse=True)))

    scanned = next(m for m in range(max(room), low - 1, -1) if fits(m))
    assert fitted == scanned
    files = {f"k{i}": [f"k{i}/{j}.png" for j in range(r)] for i, r in enumerate(room)}
    profile = Profile("pareto", alpha=alpha, max_count=fitted, min_count=low)
    built = build_lt_split(files, list(files), [], profile, val_per_class=0, test_per_class=0, open_per_class=None, seed=0)
    assert sorted(built.class_counts, reverse=True) == pareto_counts(len(room), alpha, fitted, low)


def test_fitted_max_when_nothing_fits_is_the_minimum():
    assert fit_pareto_max([10, 2], 6.0, 3) == 3

"""Face identification metrics (SPEC.md §6) against a brute-force numpy reference: all pairs, full sort."""

from __future__ import annotations

from fractions import Fraction

import numpy as np
import pytest

from oltr_bench.metrics import faces
from oltr_bench.metrics.faces import FARS, identification
from oltr_bench.protocols import FACE_GROUPS, face_groups


def reference(probes, identity, distractors, counts=None):
    """The definitions of SPEC.md §6, written out the slow way."""
    p = probes / np.linalg.norm(probes, axis=1, keepdims=True)
    d = distractors / np.linalg.norm(distractors, axis=1, keepdims=True)
    imp = p @ d.T
    ranks, owners, genuine = [], [], []
    for i in range(len(p)):
        sorted_imp = np.sort(imp[i])[::-1]  # full sort per probe
        for j in range(len(p)):
            if i == j or identity[i] != identity[j]:
                continue
            g = float(p[i] @ p[j])
            ranks.append(1 + int(np.sum(sorted_imp >= g)))
            owners.append(i)
            if i < j:
                genuine.append(g)
    ranks, owners, genuine = np.array(ranks), np.array(owners, dtype=int), np.array(genuine)
    out = {"rank1": float(np.mean(ranks == 1)) if len(ranks) else None,
           "cmc": [float(np.mean(ranks <= k)) if len(ranks) else None for k in range(1, 11)]}
    for g, name in enumerate(FACE_GROUPS):
        if counts is None:
            out[f"rank1_{name}"] = None
            continue
        sel = np.array([face_groups([counts[o]])[0] == g for o in owners], dtype=bool)
        out[f"rank1_{name}"] = float(np.mean(ranks[sel] == 1)) if sel.any() else None
    allimp = imp.reshape(-1)
    n = len(allimp)
    tar = {}
    for far in FARS:
        f = Fraction(far)
        if n < 1 / f or not len(genuine):
            tar[far] = None
            continue
        asc = np.sort(allimp)  # full sort; above[v] = #{impostor > v} for every distinct score v
        values = np.unique(asc)
        above = n - np.searchsorted(asc, values, side="right")
        t = min(v for v, a in zip(values, above) if Fraction(int(a), n) <= f)
        tar[far] = float(np.mean(genuine > t))
    out["tar_at_far"] = tar
    return out


def dyadic(rng, n, dim):
    """Unit vectors with entries in {0, ±1/2}: every dot product is exact, so ties are real ties."""
    x = np.zeros((n, dim))
    for row in x:
        row[rng.choice(dim, 4, replace=False)] = rng.choice([-0.5, 0.5], 4)
    return x


def run(probes, identity, distractors, counts=None, block=7):
    blocks = (distractors[s:s + block] for s in range(0, len(distractors), block))
    return identification(probes, np.asarray(identity), blocks, len(distractors), counts, device="cpu")


def assert_close(got, want):
    for key, value in want.items():
        if isinstance(value, dict):
            assert got[key].keys() == value.keys()
            for k in value:
                assert (got[key][k] is None) == (value[k] is None), (key, k)
                if value[k] is not None:
                    assert abs(got[key][k] - value[k]) <= 1e-12, (key, k, got[key][k], value[k])
        elif isinstance(value, list):
            assert np.allclose(got[key], value, atol=1e-12, rtol=0), key
        elif value is None:
            assert got[key] is None, key
        else:
            assert abs(got[key] - value) <= 1e-12, (key, got[key], value)


@pytest.mark.parametrize("seed", range(4))
def test_random_embeddings_match_the_reference(seed, monkeypatch):
    monkeypatch.setattr(faces._Tail, "SLACK", 0)
    rng = np.random.default_rng(seed)
    identity = rng.integers(0, 12, 60).astype(str)  # some identities have one image (no pair)
    counts_by_id = {str(i): int(c) for i, c in enumerate(rng.choice([0, 1, 5, 30, 300], 12))}
    counts = np.array([counts_by_id[i] for i in identity])
    probes, distractors = rng.normal(size=(60, 16)), rng.normal(size=(1100, 16))
    got = run(probes, identity, distractors, counts, block=64)
    want = reference(probes, identity, distractors, counts)
    assert_close(got["metrics"], want)
    assert got["counts"]["distractors"] == 1100 and got["counts"]["impostor_scores"] == 66000


@pytest.mark.parametrize("seed", range(3))
def test_ties_count_against_the_genuine_match(seed, monkeypatch):
    monkeypatch.setattr(faces._Tail, "SLACK", 0)  # prune the impostor tail after nearly every block, ties at the cut included
    rng = np.random.default_rng(100 + seed)
    identity = rng.integers(0, 8, 40)
    base, other = dyadic(rng, 8, 10), dyadic(rng, 40, 10)  # few directions: many exact ties
    probes = np.where(rng.random((40, 1)) < 0.6, base[identity], other)
    identity = identity.astype(str)
    distractors = np.concatenate([dyadic(rng, 60, 10), probes[:5]])  # copies of probes: ties with genuine scores
    counts = rng.choice([0, 1, 3, 50, 101], 40)
    counts = np.array([counts[int(i)] for i in identity])
    got = run(probes, identity, distractors, counts)
    want = reference(probes, identity, distractors, counts)
    assert_close(got["metrics"], want)
    assert 0 < want["rank1"] < 1


def test_identities_of_one_image_and_empty_groups():
    rng = np.random.default_rng(7)
    probes = rng.normal(size=(5, 8))
    identity = np.array(["a", "b", "c", "c", "d"])
    counts = np.array([0, 0, 150, 150, 0])  # only "many" has a pair; the other groups are empty
    distractors = rng.normal(size=(2000, 8))
    got = run(probes, identity, distractors, counts, block=300)
    want = reference(probes, identity, distractors, counts)
    assert_close(got["metrics"], want)
    assert got["metrics"]["rank1_zero"] is None and got["metrics"]["rank1_medium"] is None
    assert got["counts"]["pairs"] == 2 and got["groups"]["zero"]["probes"] == 3


def test_no_pairs_no_counts_few_distractors():
    rng = np.random.default_rng(8)
    probes = rng.normal(size=(3, 4))
    got = run(probes, ["a", "b", "c"], rng.normal(size=(4, 4)))
    m = got["metrics"]
    assert m["rank1"] is None and m["cmc"] == [None] * 10 and all(v is None for v in m["tar_at_far"].values())
    probes = np.array([[1.0, 0], [0.6, 0.8]])  # one pair, 3 distractors: ranks 2 and 3
    distractors = np.array([[0.8, 0.6], [0.0, 1.0], [-1.0, 0.0]])
    m = run(probes, ["x", "x"], distractors, np.array([1, 1]))["metrics"]
    assert_close(m, reference(probes, np.array(["x", "x"]), distractors, np.array([1, 1])))
    assert m["rank1"] == 0.0 and m["cmc"][1] == 0.5 and m["cmc"][2] == 1.0 and m["rank1_one"] == 0.0


def test_face_groups_boundaries():
    assert [FACE_GROUPS[g] for g in face_groups([0, 1, 2, 19, 20, 100, 101])] == \
        ["zero", "one", "few", "few", "medium", "medium", "many"]

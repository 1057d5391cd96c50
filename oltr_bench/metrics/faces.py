"""Face identification, the MegaFace way (SPEC.md §6): rank-1 per shot group, CMC, TAR@FAR.

s = cosine similarity of the L2-normalised embeddings, computed in float64.

- Pairs: for every identity with n >= 2 probe images, every ordered pair (i, j), i != j: probe i,
  genuine gallery image j. rank(i, j) = 1 + #{distractors d : s(i, d) >= s(i, j)} (ties count
  against the genuine match).
- ``rank1`` = mean over pairs of [rank = 1]; ``cmc`` = [mean of rank <= k for k = 1..10];
  ``rank1_<group>`` the same over the pairs whose probe identity is in that shot group
  (:data:`oltr_bench.protocols.FACE_GROUPS`; null when the group has no pair or counts are absent).
- ``tar_at_far``: genuine scores = s(i, j) over unordered pairs within an identity, impostor
  scores = s(probe, distractor) over all probes and distractors; for each FAR f,
  t = the smallest score with #{impostor > t} <= f * #impostor, TAR = share of genuine > t
  (null when there are fewer than 1/f impostor scores).

The evaluation is exact, not approximate, and its memory does not grow with the distractors:
they stream through in blocks, one matrix product (probes x block) each, on the GPU when there
is one. Per probe only the 10 highest distractor scores are kept (a genuine score g has rank <= k
exactly when fewer than k of them are >= g), and over all probes only the highest
floor(f_max * #impostor) + 1 impostor scores (the largest FAR's threshold is the last of them).
"""

from __future__ import annotations

import logging
from fractions import Fraction
from typing import Any, Iterable

import numpy as np
import torch

from oltr_bench.protocols import FACE_FARS, FACE_GROUP_RULES, FACE_GROUPS, face_groups

log = logging.getLogger(__name__)

CMC_RANKS = 10
FARS = FACE_FARS
BLOCK_ELEMENTS = 2**25  # probes x block scores held at once (256 MiB in float64)


def normalise(x: np.ndarray) -> np.ndarray:
    """Rows of ``x`` as float64 unit vectors (the one normalisation of probes and distractors alike)."""
    x = np.asarray(x, dtype=np.float64)
    return x / np.sqrt(np.einsum("ij,ij->i", x, x))[:, None]


def far_count(far: str, impostors: int) -> int | None:
    """floor(f * #impostor), the impostor scores allowed above the threshold; None when #impostor < 1/f."""
    f = Fraction(far)
    if impostors * f < 1:
        return None
    return int(impostors * f.numerator // f.denominator)


class _Tail:
    """The highest ``keep`` values of a stream (exact; ties kept)."""

    SLACK = 2**20  # values held beyond 2 * keep before pruning (fewer prunes of small tails)

    def __init__(self, keep: int, device: torch.device):
        self.keep, self.device = keep, device
        self.parts: list[torch.Tensor] = []
        self.size = 0
        self.cut = -float("inf")  # at least `keep` values kept are >= cut: a value below it is never needed

    def add(self, scores: torch.Tensor) -> None:
        if self.keep <= 0:
            return
        chosen = scores[scores >= self.cut] if self.cut > -float("inf") else scores.reshape(-1)
        if chosen.numel():
            self.parts.append(chosen.reshape(-1).clone())
            self.size += chosen.numel()
        if self.size > 2 * self.keep + self.SLACK:
            self._prune()

    def _prune(self) -> None:
        values = torch.cat(self.parts)
        if values.numel() > self.keep:
            # the keep-th largest value; everything >= it is kept (ties too), so nothing it may need is lost
            self.cut = float(torch.kthvalue(values, values.numel() - self.keep + 1).values)
            values = values[values >= self.cut]
        self.parts, self.size = [values], values.numel()

    def sorted_desc(self) -> torch.Tensor:
        if not self.parts:
            return torch.zeros(0, dtype=torch.float64)
        return torch.sort(torch.cat(self.parts), descending=True).values.cpu()


def pick_device(device: str | torch.device | None = None) -> torch.device:
    if device is not None:
        return torch.device(device)
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def genuine_pairs(identity: np.ndarray, features: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Ordered genuine pairs ``(probe index, genuine score)`` and the unordered pairs' scores."""
    codes = np.unique(identity, return_inverse=True)[1].reshape(-1)
    order = np.argsort(codes, kind="stable")
    bounds = np.flatnonzero(np.diff(codes[order])) + 1
    probe, score, unordered = [], [], []
    for members in np.split(order, bounds):
        n = len(members)
        if n < 2:
            continue
        block = features[members]
        g = block @ block.T
        i, j = np.nonzero(~np.eye(n, dtype=bool))
        probe.append(members[i])
        score.append(g[i, j])
        iu, ju = np.triu_indices(n, 1)
        unordered.append(g[iu, ju])
    if not probe:
        return np.zeros(0, np.int64), np.zeros(0), np.zeros(0)
    return np.concatenate(probe), np.concatenate(score), np.concatenate(unordered)


def identification(
    probe_features: np.ndarray,
    probe_identity: np.ndarray,
    distractor_blocks: Iterable[np.ndarray],
    n_distractors: int,
    probe_train_count: np.ndarray | None = None,
    *,
    fars: tuple[str, ...] = FARS,
    device: str | torch.device | None = None,
    progress=None,
) -> dict[str, Any]:
    """Every metric of SPEC.md §6 from the probes and the ``n_distractors`` distractors (an iterable
    of ``[b, D]`` blocks, streamed once). Returns ``{"metrics", "groups", "counts"}`` of
    ``face_results.json``."""
    device = pick_device(device)
    probes = normalise(probe_features)
    n_probes = len(probes)
    pair_probe, pair_score, genuine = genuine_pairs(np.asarray(probe_identity), probes)
    xp = torch.from_numpy(probes).to(device)
    top = torch.full((n_probes, 0), -float("inf"), dtype=torch.float64, device=device)
    impostors = n_probes * n_distractors
    allowed = {far: far_count(far, impostors) for far in fars}
    tail = _Tail(max([a + 1 for a in allowed.values() if a is not None], default=0), device)
    seen = 0
    for block in distractor_blocks:
        if len(block) == 0:
            continue
        xd = torch.from_numpy(normalise(block)).to(device)
        s = xp @ xd.T
        k = min(CMC_RANKS, top.shape[1] + s.shape[1])
        top = torch.cat([top, torch.topk(s, min(CMC_RANKS, s.shape[1]), dim=1).values], 1).topk(k, dim=1).values
        seen += len(block)
        tail.add(s)
        if progress is not None:
            progress(len(block))
    if seen != n_distractors:
        raise ValueError(f"{seen} distractors streamed, {n_distractors} announced")
    top = top.cpu().numpy()
    # rank(i, j) capped at 11: 1 + #{kept top scores >= g}; when that is < 10 it is the exact count
    ranks = 1 + (top[pair_probe] >= pair_score[:, None]).sum(axis=1) if len(pair_probe) else np.zeros(0, np.int64)
    cmc = [float(np.mean(ranks <= k)) if len(ranks) else None for k in range(1, CMC_RANKS + 1)]
    metrics: dict[str, Any] = {"rank1": cmc[0], "cmc": cmc}
    groups: dict[str, Any] = {"rules": dict(FACE_GROUP_RULES)}
    counts_present = probe_train_count is not None
    group_of_probe = face_groups(probe_train_count) if counts_present else None
    for g, name in enumerate(FACE_GROUPS):
        if not counts_present:
            metrics[f"rank1_{name}"] = None
            continue
        in_group = group_of_probe[pair_probe] == g
        metrics[f"rank1_{name}"] = float(np.mean(ranks[in_group] == 1)) if in_group.any() else None
        groups[name] = {"probes": int((group_of_probe == g).sum()), "pairs": int(in_group.sum()),
                        "identities": int(len(np.unique(np.asarray(probe_identity)[group_of_probe == g])))}
    tar: dict[str, Any] = {}
    highest = tail.sorted_desc()
    for far in fars:
        if allowed[far] is None or len(genuine) == 0:
            tar[far] = None
            continue
        threshold = float(highest[allowed[far]])  # the (allowed+1)-th highest impostor score
        tar[far] = float(np.mean(genuine > threshold))
    metrics["tar_at_far"] = tar
    counts = {"probes": n_probes, "pairs": int(len(pair_probe)), "genuine_pairs": int(len(genuine)),
              "identities": int(len(np.unique(np.asarray(probe_identity)))), "distractors": n_distractors,
              "impostor_scores": impostors}
    return {"metrics": metrics, "groups": groups, "counts": counts}


def evaluate_embeddings(path, *, distractors: int | None = None, subset: np.ndarray | None = None,
                        subset_name: str | None = None, method: str | None = None, device: str | None = None,
                        block_rows: int | None = None, progress: bool = False) -> dict[str, Any]:
    """Validate an embeddings file (SPEC.md §6) and score it: the contents of ``face_results.json``.

    ``distractors``: use the first that many (default all); ``subset``: the ids of a named subset
    list instead (``subset_name`` is recorded)."""
    import time

    from tqdm import tqdm

    from oltr_bench import __version__, formats
    from oltr_bench.metrics.embeddings import EmbeddingsFile

    started = time.perf_counter()
    with EmbeddingsFile(path) as emb:
        rows = block_rows or max(256, BLOCK_ELEMENTS // max(len(emb.probe_ids), 1))
        count, selected = emb.select(distractors, subset)
        dev = pick_device(device)
        bar = tqdm(total=count, desc="distractors", unit="img", unit_scale=True, disable=not progress, leave=False)
        scored = identification(emb.probe_features, emb.probe_identity, emb.distractor_blocks(rows, count, selected), count,
                                emb.probe_train_count, device=dev, progress=bar.update)
        bar.close()
        meta = emb.meta
    return {
        "format": formats.FACE_RESULTS,
        "dataset": str(meta.get("dataset") or "ms1m_lt"),
        "method": method or meta.get("method"),
        "protocol": meta.get("protocol"),
        "metrics": scored["metrics"],
        "groups": scored["groups"],
        "distractors": count,
        "distractor_subset": subset_name,
        "counts": scored["counts"],
        "provenance": {"embeddings": str(path), "embedding": meta.get("embedding"), "meta": meta, "device": str(dev),
                       "block_rows": rows, "seconds": round(time.perf_counter() - started, 3), "oltr_bench": __version__},
    }

"""Probe and distractor lists of the face identification protocols (SPEC.md §6).

- ``heldout`` (default; needs only the split, e.g. MS1M-LT from MS1M-ArcFace): the probes are the
  split's test images of known identities (their training counts give the shot groups) plus the
  images of half of the held-out (open) identities (zero-shot); the distractors are the images of
  the other held-out identities. Which open identities are probes is drawn with a seed (default:
  the split's own seed, recorded in its manifest), so the lists follow from the split and a seed.
  On the embedded benchmark this is the embedded analogue: its classes are the identities.
- ``megaface``: the user's insightface MegaFace test pack (FaceScrub probes, MegaFace
  distractors; :func:`oltr_bench.formats.megaface.detect_pack`), optionally with the insightface
  noise lists applied (noisy probes and distractors are left out; recorded in the results).
  FaceScrub identities have no MS1M-LT training count unless ``--probe-counts`` maps them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from oltr_bench.errors import OltrError
from oltr_bench.formats import megaface
from oltr_bench.splits.builder import class_rng
from oltr_bench.splits.format import SplitDir

PROTOCOLS = ("heldout", "megaface")
ZERO_SHOT_SHARE = 0.5  # of the held-out identities, the share whose images are zero-shot probes


@dataclass
class FaceLists:
    protocol: str
    probes: list[str]
    probe_identity: list[str]
    probe_root: Path
    distractors: list[str]
    distractor_identity: list[str]
    distractor_root: Path
    probe_train_count: list[int] | None = None
    params: dict[str, Any] = field(default_factory=dict)


def _open_identities(split: SplitDir, paths: list[str]) -> list[str]:
    """The identity of each open image: its record's label (``rec:`` lists, MS1M) or its folder."""
    if paths and paths[0].startswith("rec:"):
        from oltr_bench.formats.recordio import REC_NAME, RecordIO

        labels = []
        with RecordIO(split.root("open") / REC_NAME) as rec:
            for p in paths:
                label = rec.read(int(p[4:]))[0].label
                labels.append(f"ms1m:{int(label[0] if isinstance(label, tuple) else label)}")
        return labels
    folders = [Path(p).parent.as_posix() for p in paths]
    if any(f in ("", ".") for f in folders):
        raise OltrError(f"{split.path}: open image {paths[folders.index('')] if '' in folders else paths[0]} is in no "
                        "identity folder; the heldout face protocol needs the open identities (<identity>/<image> paths)")
    return [f"open:{f}" for f in folders]


def heldout(split: SplitDir, seed: int | None = None, zero_shot_share: float = ZERO_SHOT_SHARE) -> FaceLists:
    """The heldout protocol's lists from a split (module docstring)."""
    if not split.has("open"):
        raise OltrError(f"{split.path}: the split has no open list; the heldout face protocol draws its zero-shot probes and "
                        "distractors from the held-out identities")
    if seed is None:
        seed = int(split.manifest.get("source", {}).get("seed") or 0)
    classes = split.manifest.get("classes") or [str(c) for c in range(split.num_classes)]
    counts = split.train_counts
    test = split.entries("test")
    probes = [p for p, _ in test]
    identity = [f"known:{classes[c]}" for _, c in test]
    train_count = [int(counts[c]) for _, c in test]
    open_paths = [p for p, _ in split.entries("open")]
    open_ids = _open_identities(split, open_paths)
    names = sorted(set(open_ids))
    order = class_rng(seed, "faces-heldout").permutation(len(names))
    n_zero = int(round(len(names) * zero_shot_share))
    if len(names) >= 2:
        n_zero = min(max(n_zero, 1), len(names) - 1)
    zero = {names[i] for i in order[:n_zero]}
    distractors, distractor_identity = [], []
    for p, ident in zip(open_paths, open_ids):
        if ident in zero:
            probes.append(p)
            identity.append(ident)
            train_count.append(0)
        else:
            distractors.append(p)
            distractor_identity.append(ident)
    if not distractors:
        raise OltrError(f"{split.path}: the open list has {len(names)} identities; the heldout protocol needs at least two "
                        "(zero-shot probes and distractors)")
    if split.root("test") != split.root("open"):
        raise OltrError(f"{split.path}: the test and open lists have different roots; the heldout protocol reads the probes "
                        "from one root")
    return FaceLists("heldout", probes, identity, split.root("test"), distractors, distractor_identity, split.root("open"),
                     train_count, {"seed": seed, "zero_shot_share": zero_shot_share, "split": str(split.path),
                                   "split_fingerprint": split.fingerprint, "zero_shot_identities": len(zero),
                                   "distractor_identities": len(names) - len(zero)})


def read_probe_counts(path: Path) -> dict[str, int]:
    """``identity count`` lines (whitespace or comma separated): MS1M-LT training images of FaceScrub identities."""
    counts: dict[str, int] = {}
    for n, line in enumerate(Path(path).read_text(encoding="utf-8").splitlines(), 1):
        parts = line.replace(",", " ").split()
        if not parts or line.startswith("#"):
            continue
        if len(parts) != 2 or not parts[1].isdigit():
            raise OltrError(f"{path}:{n}: found {line!r}; expected '<identity> <training image count>'")
        counts[parts[0]] = int(parts[1])
    return counts


def megaface_lists(root: Path, size: int | None = None, noise: bool = False, probe_counts: Path | None = None) -> FaceLists:
    """The megaface protocol's lists from the user's insightface MegaFace test pack."""
    pack = megaface.detect_pack(root)
    probes = megaface.read_list(pack.probe_list)
    distractor_list = pack.distractor_list(size)
    distractors = megaface.read_list(distractor_list)
    removed = {"probe": 0, "distractor": 0}
    if noise:
        missing = [k for k in megaface.NOISE_LISTS if k not in pack.noise]
        if missing:
            raise OltrError(f"{pack.root}: --noise-lists needs {', '.join(megaface.NOISE_LISTS[k] for k in missing)}; not found "
                            "next to the lists")
        noisy_p, noisy_d = megaface.read_noises(pack.noise["probe"]), megaface.read_noises(pack.noise["distractor"])
        kept_p = [p for p in probes if Path(p).name not in noisy_p]
        kept_d = [d for d in distractors if Path(d).name not in noisy_d]
        removed = {"probe": len(probes) - len(kept_p), "distractor": len(distractors) - len(kept_d)}
        probes, distractors = kept_p, kept_d
    identity = [megaface.probe_identity(p) for p in probes]
    counts = None
    if probe_counts is not None:
        table = read_probe_counts(probe_counts)
        absent = sorted({i for i in identity if i not in table})
        if absent:
            raise OltrError(f"{probe_counts}: no training count for {len(absent)} FaceScrub identities (first: {absent[0]}); "
                            "expected one line per probe identity")
        counts = [table[i] for i in identity]
    for rel, tree in ((probes[:1], pack.probe_root), (distractors[:1], pack.distractor_root)):
        for p in rel:
            if not (tree / p).is_file():
                raise OltrError(f"{tree / p}: listed in the pack's template list but missing; expected the pack's aligned images")
    return FaceLists("megaface", probes, identity, pack.probe_root, distractors, [f"megaface:{d}" for d in distractors],
                     pack.distractor_root, counts,
                     {"pack": str(pack.root), "distractor_list": distractor_list.name, "noise_lists": noise,
                      "noise_removed": removed})

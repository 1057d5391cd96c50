"""MS1M-LT from the user's MS1M-ArcFace RecordIO (insightface ``faces_emore``), without MXNet.

The OLTR paper builds MS1M-LT by sampling the images of each MS1M-ArcFace identity "with a
probability proportional to the image numbers of each identity", which gave about 887.5K images
of 74.5K identities (figures as recalled in the project's research notes); the code and the exact
rule were never released (OLTR issue #46) and the paper evaluates on MegaFace, which is not part
of this split. What is implemented, and where it fills gaps in the paper:

1. Per identity c with n_c images, a seeded permutation (depends only on seed and identity label)
   sets aside ``test_per_class`` test and ``val_per_class`` val images first [ours: the paper has
   no held-out images of known identities].
2. Each remaining image is kept for training independently with probability
   ``p_c = min(1, n_c / Z)`` [the paper's rule read literally: proportional to n_c]. ``Z`` is solved
   so that the expected number of training images is ``train_fraction`` of all images; the
   default fraction, 887,500 / 5,822,653, is the paper's figure over MS1M-ArcFace's size.
3. Identities with at least one training image are the known classes (labels 0..K-1 in the order
   of the original identity labels). Their set-aside images form val and test.
4. Identities left without a training image (small identities, whose p_c is small) were never
   trained on: up to ``open_per_class`` images of each form the open list, label -1 [ours: the
   paper's open evaluation uses MegaFace identities instead].

Identities and their images come from the header record 0 (``[id_start, id_end)`` of identity
records, each with the ``[start, end)`` key range of one identity; the identity label is read from
the first image's header) or, in files without it, from the label of every image record.
List paths are ``rec:<key>``, relative to the folder holding ``train.rec`` and ``train.idx``
(SPEC.md §1; :mod:`oltr_bench.formats.recordio` reads them).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np

from oltr_bench.formats.recordio import IDX_NAME, REC_NAME, RECORD_PREFIX, IRHeader, RecordIO
from oltr_bench.errors import OltrError
from oltr_bench.registry import DATASETS
from oltr_bench.splits.builder import class_rng
from oltr_bench.splits.format import SplitDir, write_split_dir
from oltr_bench.splits.scan import progress_bar
from oltr_bench.splits.spec import DatasetSpec, ensure_free

log = logging.getLogger(__name__)

PAPER_IMAGES, MS1M_ARCFACE_IMAGES = 887_500, 5_822_653
DEFAULT_TRAIN_FRACTION = PAPER_IMAGES / MS1M_ARCFACE_IMAGES
DEFAULT_VAL_PER_CLASS = 2
DEFAULT_TEST_PER_CLASS = 5
DEFAULT_OPEN_PER_CLASS = 5
FLOAT32_EXACT = 1 << 24  # labels are float32: integers above this may be rounded


def _label(header: IRHeader) -> int:
    value = header.label[0] if isinstance(header.label, tuple) else header.label
    return int(value)


def read_identities(rec: RecordIO, progress: bool) -> tuple[dict[int, range | np.ndarray], dict[str, Any]]:
    """``{identity label: image record keys}`` and how they were found (see the module docstring)."""
    header0 = rec.header(0) if 0 in rec else None
    if header0 is not None and header0.flag >= 2:
        id_start, id_end = (int(v) for v in header0.label[:2])
        if not 1 <= id_start <= id_end or any(k not in rec for k in (id_start, id_end - 1)):
            raise OltrError(
                f"{rec.rec_path}: header record 0 gives identity records [{id_start}, {id_end}), which the index does not hold"
            )
        if id_end > FLOAT32_EXACT:
            log.info(f"note: record keys above {FLOAT32_EXACT:,} are stored as float32 and may be off by one in the identity ranges")
        identities: dict[int, range | np.ndarray] = {}
        taken = 0
        for key in progress_bar(range(id_start, id_end), desc="reading identities", total=id_end - id_start,
                                enabled=progress, unit="id"):
            head = rec.header(key)
            if head.flag < 2:
                raise OltrError(f"{rec.rec_path}: identity record {key} has no [start, end) label")
            start, end = int(head.label[0]), int(head.label[1])
            if not 1 <= start < end <= id_start or start not in rec or end - 1 not in rec:
                raise OltrError(f"{rec.rec_path}: identity record {key} gives images [{start}, {end}) outside 1..{id_start - 1}")
            label = _label(rec.header(start))
            if label in identities:
                raise OltrError(f"{rec.rec_path}: identity label {label} has two identity records (the second is key {key})")
            identities[label] = range(start, end)
            taken += end - start
        spans = sorted((r.start, r.stop) for r in identities.values())
        if any(a[1] > b[0] for a, b in zip(spans, spans[1:])):
            raise OltrError(f"{rec.rec_path}: the identity records' image ranges overlap")
        return identities, {"header0": [id_start, id_end], "images": taken}
    keys = rec.key_array
    labels = np.empty(len(keys), dtype=np.int64)
    for i, key in enumerate(progress_bar(keys.tolist(), desc="reading record labels", total=len(keys),
                                         enabled=progress, unit="record")):
        labels[i] = _label(rec.header(key))
    identities = {}
    if len(keys):
        order = np.argsort(labels, kind="stable")
        sorted_labels = labels[order]
        starts = np.flatnonzero(np.r_[True, sorted_labels[1:] != sorted_labels[:-1]])
        for first, group in zip(starts, np.split(keys[order], starts[1:])):
            identities[int(sorted_labels[first])] = np.sort(group)
    return identities, {"header0": None, "images": len(keys)}


def solve_z(sizes: np.ndarray, pools: np.ndarray, target: float) -> float:
    """``Z`` with ``sum(pools * min(1, sizes / Z)) == target`` (the expected number of training images)."""
    if target > pools.sum():
        raise OltrError(f"--train-fraction asks for {target:,.0f} training images but only {pools.sum():,.0f} are left after val/test")

    def expected(z: float) -> float:
        return float((pools * np.minimum(1.0, sizes / z)).sum())

    lo, hi = float(sizes.min()), max(float(sizes.min()), float((pools * sizes).sum()) / max(target, 1e-12))
    for _ in range(200):
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if expected(mid) > target else (lo, mid)
    return hi


def sample_ms1m(
    identities: dict[int, range | np.ndarray], *, train_fraction: float, val_per_class: int, test_per_class: int,
    open_per_class: int, seed: int,
) -> tuple[dict[str, list[tuple[str, int]]], list[int], dict[str, Any]]:
    """The MS1M-LT lists (module docstring), the known identity labels, and the sampling figures."""
    labels = sorted(identities)
    sizes = np.array([len(identities[c]) for c in labels], dtype=np.float64)
    reserve = val_per_class + test_per_class
    pools = np.maximum(sizes - reserve, 0)
    z = solve_z(sizes, pools, train_fraction * sizes.sum())
    chosen: dict[int, tuple[list[int], list[int], list[int]]] = {}
    unseen: list[int] = []
    for c, n in zip(labels, sizes):
        keys = np.asarray(identities[c])
        rng = class_rng(seed, "identity", str(c))
        order = keys[rng.permutation(len(keys))]
        pool = order[reserve:]
        kept = pool[rng.random(len(pool)) < min(1.0, n / z)]
        if len(kept):
            chosen[c] = (sorted(kept.tolist()), sorted(order[test_per_class:reserve].tolist()), sorted(order[:test_per_class].tolist()))
        else:
            unseen.append(c)
    known = sorted(chosen)
    lists: dict[str, list[tuple[str, int]]] = {"train": [], "val": [], "test": []}
    for new_label, c in enumerate(known):
        for split, keys in zip(("train", "val", "test"), chosen[c]):
            lists[split] += [(f"{RECORD_PREFIX}{k}", new_label) for k in keys]
    open_keys: list[int] = []
    for c in unseen:
        keys = np.asarray(identities[c])
        order = keys[class_rng(seed, "identity", str(c)).permutation(len(keys))]
        open_keys += order[:open_per_class].tolist()
    if open_keys:
        lists["open"] = [(f"{RECORD_PREFIX}{k}", -1) for k in sorted(open_keys)]
    figures = {
        "identities": len(labels),
        "known_identities": len(known),
        "open_identities": len(unseen),
        "images": int(sizes.sum()),
        "Z": z,
        "expected_train_images": round(float((pools * np.minimum(1.0, sizes / z)).sum()), 1),
    }
    return lists, known, figures


def _rec_folder(root: Path) -> Path:
    folder = root.parent if root.is_file() and root.name == REC_NAME else root
    if not (folder / REC_NAME).is_file() or not (folder / IDX_NAME).is_file():
        raise OltrError(
            f"--root {root}: expected {REC_NAME} and {IDX_NAME} in it (the MS1M-ArcFace folder, e.g. faces_emore/)"
        )
    return folder


@DATASETS.register("ms1m_lt", aliases=("ms1m",))
class MS1MLT(DatasetSpec):
    """MS1M-LT: identities of MS1M-ArcFace sampled long-tailed (OLTR's rule), with val/test and unseen identities."""

    name = "ms1m_lt"
    needs = (
        "--root: the MS1M-ArcFace folder (insightface faces_emore) with train.rec and train.idx; read without MXNet. "
        "List paths are rec:<key>"
    )
    sources = (
        ("MS1M-ArcFace (faces_emore: train.rec, train.idx)", "InsightFace's dataset list, "
         "https://github.com/deepinsight/insightface/tree/master/recognition/_datasets_"),
        ("the paper's MS1M-LT lists", "never released (OLTR issue #46): the split is generated by the paper's rule"),
    )
    options = frozenset({"root", "train_fraction", "val_per_class", "test_per_class", "open_per_class"})

    def make_splits(
        self,
        out_root: Path,
        *,
        seed: int,
        overwrite: bool,
        progress: bool,
        root: Path | None = None,
        train_fraction: float | None = None,
        val_per_class: int | None = None,
        test_per_class: int | None = None,
        open_per_class: int | None = None,
        **_: Any,
    ) -> SplitDir:
        if root is None:
            raise OltrError("dataset 'ms1m_lt' needs --root DIR: the folder with train.rec and train.idx")
        folder = _rec_folder(Path(root))
        ensure_free(out_root / self.name, overwrite)
        fraction = DEFAULT_TRAIN_FRACTION if train_fraction is None else train_fraction
        if not 0 < fraction <= 1:
            raise OltrError(f"--train-fraction {fraction}: expected a share of the images in (0, 1]")
        val = DEFAULT_VAL_PER_CLASS if val_per_class is None else val_per_class
        test = DEFAULT_TEST_PER_CLASS if test_per_class is None else test_per_class
        open_n = DEFAULT_OPEN_PER_CLASS if open_per_class is None else open_per_class
        if min(val, test) < 1 or open_n < 1:
            raise OltrError("MS1M-LT needs at least one val, one test and one open image per identity")
        with RecordIO(folder / REC_NAME, folder / IDX_NAME) as rec:
            identities, found = read_identities(rec, progress)
        if not identities:
            raise OltrError(f"{folder / REC_NAME} holds no image records")
        property_file = folder / "property"
        if property_file.is_file():
            declared = property_file.read_text(encoding="utf-8").strip().split(",")[0]
            found["property_classes"] = int(declared) if declared.isdigit() else declared
            if declared.isdigit() and int(declared) != max(identities) + 1:
                log.info(f"note: {property_file} declares {declared} identities; the records have labels up to {max(identities)}")
        lists, known, figures = sample_ms1m(
            identities, train_fraction=fraction, val_per_class=val, test_per_class=test, open_per_class=open_n, seed=seed,
        )
        if not known:
            raise OltrError("no identity kept a training image; raise --train-fraction")
        source = {
            "kind": "generated",
            "generator": "ms1m_lt",
            "seed": seed,
            "rule": "images kept with p = min(1, n_identity / Z) after setting aside val/test; unseen identities are open",
            "train_fraction": fraction,
            "val_per_class": val,
            "test_per_class": test,
            "open_per_class": open_n,
            "records": {"rec": REC_NAME, "idx": IDX_NAME, **found},
            **figures,
        }
        return write_split_dir(
            out_root / self.name, dataset=self.name, classes=[str(c) for c in known], lists=lists,
            roots={split: str(folder.resolve()) for split in lists}, source=source, overwrite=overwrite,
        )

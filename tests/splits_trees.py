"""Miniature copies of the real dataset layouts for the split tests (empty image files).

Only names matter to make-splits, so the trees hold empty files; they have the real folder
structure and file naming of ILSVRC-2012/2010, Places365 and the Kaggle ImageNet tree.
"""

from __future__ import annotations

import io
import os
import random
import tarfile
from pathlib import Path

import numpy as np

from oltr_bench.splits.imagenet import wnids
from oltr_bench.splits.places import PLACES_LT_TO_OFFICIAL, places_lt_classes, tree_folder, easy_folder


def touch(path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.touch()


def devkit_order(seed: int = 0) -> list[str]:
    """A fake devkit ID order (ID i+1 = entry i): a permutation, to catch code that mixes it up with sorted order."""
    order = list(wnids())
    np.random.default_rng(seed).shuffle(order)
    return order


def meta_mat(id_order: list[str], field: str = "ILSVRC2012_ID") -> bytes:
    """A devkit meta.mat: leaf synsets with IDs 1..n in ``id_order``, plus one internal node."""
    from scipy.io import savemat

    rows = np.zeros(len(id_order) + 1, dtype=[(field, "O"), ("WNID", "O"), ("num_children", "O")])
    rows[field] = list(range(1, len(id_order) + 1)) + [len(id_order) + 1]
    rows["WNID"] = list(id_order) + ["n00001740"]
    rows["num_children"] = [0] * len(id_order) + [3]
    buf = io.BytesIO()
    savemat(buf, {"synsets": rows})
    return buf.getvalue()


def imagenet_tree(root: Path, *, train_per_class: int = 6, val_per_class: int = 1, val: str = "folders") -> dict[str, str]:
    """An ILSVRC-2012 copy; ``val`` is ``folders``, ``flat-meta``, ``flat-clsloc``, ``flat-tar`` or ``kaggle``.

    Returns ``{val file name: wnid}`` (the truth every layout must reproduce).
    """
    names = wnids()
    base = root / "ILSVRC" / "Data" / "CLS-LOC" if val == "kaggle" else root
    for w in names:
        folder = base / "train" / w
        folder.mkdir(parents=True)
        for i in range(train_per_class):
            (folder / f"{w}_{i * 7 + 1}.JPEG").touch()
    truth = {}
    number = 0
    for k in range(val_per_class):
        for w in reversed(names):  # val numbers do not follow class order
            number += 1
            truth[f"ILSVRC2012_val_{number:08d}.JPEG"] = w
    order = devkit_order()
    ids = {w: i + 1 for i, w in enumerate(order)}
    for name, w in truth.items():
        touch(base / "val" / (w if val == "folders" else "") / name)
    gt = "".join(f"{ids[truth[n]]}\n" for n in sorted(truth))
    if val == "flat-meta":
        touch(root / "ILSVRC2012_devkit_t12" / "data" / "meta.mat")
        (root / "ILSVRC2012_devkit_t12" / "data" / "meta.mat").write_bytes(meta_mat(order))
        (root / "ILSVRC2012_devkit_t12" / "data" / "ILSVRC2012_validation_ground_truth.txt").write_text(gt)
    elif val == "flat-clsloc":
        (root / "map_clsloc.txt").write_text("".join(f"{w} {i + 1} name_{i}\n" for i, w in enumerate(order)))
        (root / "ILSVRC2012_validation_ground_truth.txt").write_text(gt)
    elif val == "flat-tar":
        with tarfile.open(root / "ILSVRC2012_devkit_t12.tar.gz", "w:gz") as tar:
            for member, data in (("ILSVRC2012_devkit_t12/data/meta.mat", meta_mat(order)),
                                 ("ILSVRC2012_devkit_t12/data/ILSVRC2012_validation_ground_truth.txt", gt.encode())):
                info = tarfile.TarInfo(member)
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
    elif val == "kaggle":
        rows = [f"{n[:-5]},{w} 1 2 30 40 {w} 5 6 70 80" for n, w in truth.items()]
        (root / "LOC_val_solution.csv").write_text("ImageId,PredictionString\n" + "\n".join(reversed(rows)) + "\n")
        (root / "LOC_synset_mapping.txt").write_text("".join(f"{w} name\n" for w in names))
    return truth


def ilsvrc2010_tree(root: Path, open_wnids: list[str], known_per_class: int = 2, open_per_class: int = 3) -> set[str]:
    """ILSVRC-2010 val images + devkit-1.0: 5 ILSVRC-2012 classes and ``open_wnids``; returns the open file names."""
    classes = wnids()[:5] + open_wnids
    order = list(reversed(classes)) + [f"n0999{i:04d}" for i in range(1000 - len(classes))]
    sizes = {w: (open_per_class if w in open_wnids else known_per_class) for w in classes}
    truth, number = [], 0
    for w in classes:
        for _ in range(sizes[w]):
            number += 1
            truth.append(w)
            touch(root / "val" / f"ILSVRC2010_val_{number:08d}.JPEG")
    ids = {w: i + 1 for i, w in enumerate(order)}
    data = root / "devkit-1.0" / "data"
    data.mkdir(parents=True)
    (data / "meta.mat").write_bytes(meta_mat(order, "ILSVRC2010_ID"))
    (data / "ILSVRC2010_validation_ground_truth.txt").write_text("".join(f"{ids[w]}\n" for w in truth))
    return {f"ILSVRC2010_val_{i + 1:08d}.JPEG" for i, w in enumerate(truth) if w in open_wnids}


def places_tree(root: Path, *, train_per_class: int = 5, val_per_class: int = 1, layout: str = "data_256",
                train_list: bool = False) -> dict[str, str]:
    """A Places365-Standard copy (``data_256`` + ``val_256`` + ``places365_val.txt``; ``data_256_standard``,
    torchvision's name for the same train tree; or ``easyformat``).

    Returns ``{val file name: class name}``. Labels in ``places365_val.txt`` are official indices.
    """
    flat_val = layout in ("data_256", "data_256_standard")
    names = places_lt_classes()
    official = list(names)
    for lt, off in PLACES_LT_TO_OFFICIAL.items():
        official[off] = names[lt]
    truth, number = {}, 0
    lines = []
    for name in names:
        folder = root / (f"{layout}/" + tree_folder(name) if flat_val else "train/" + easy_folder(name))
        folder.mkdir(parents=True, exist_ok=True)
        for i in range(train_per_class):
            (folder / f"{i + 1:08d}.jpg").touch()
            lines.append(f"/{tree_folder(name)}/{i + 1:08d}.jpg {official.index(name)}\n")
    for k in range(val_per_class):
        for name in reversed(names):
            number += 1
            truth[f"Places365_val_{number:08d}.jpg"] = name
    for file, name in truth.items():
        touch(root / ("val_256" if flat_val else f"val/{easy_folder(name)}") / file)
    if flat_val:
        (root / "places365_val.txt").write_text("".join(f"{f} {official.index(n)}\n" for f, n in sorted(truth.items())))
        if train_list:
            (root / "places365_train_standard.txt").write_text("".join(sorted(lines)))
    return truth


def shuffle_listings(monkeypatch, seed: int = 0) -> None:
    """Make ``os.scandir`` list every directory in a shuffled order (a file system may use any order)."""
    real_scandir = os.scandir
    rng = random.Random(seed)

    class Shuffled:
        def __init__(self, path):
            with real_scandir(path) as it:
                self.entries = list(it)
            rng.shuffle(self.entries)

        def __iter__(self):
            return iter(self.entries)

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            return False

    monkeypatch.setattr(os, "scandir", Shuffled)


def same_split(a, b) -> None:
    """Byte-identical lists and the same fingerprint."""
    assert a.fingerprint == b.fingerprint and a.manifest["files"] == b.manifest["files"]
    for info in a.manifest["files"].values():
        assert (a.path / info["name"]).read_bytes() == (b.path / info["name"]).read_bytes()

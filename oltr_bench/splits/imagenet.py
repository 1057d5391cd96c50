"""ImageNet-LT from the user's ILSVRC-2012 copy, and its open set from ILSVRC-2010.

Protocol (Liu et al. 2019, section 5; what the released lists show):

* labels are the indices of the 1000 ILSVRC-2012 wnids in sorted order (n01440764 = 0), the
  community convention the released lists use -- never the devkit's ILSVRC2012_ID order;
* train: a long-tailed subset of the train images, class sizes from a Pareto profile with
  alpha = 6 from 1280 down to 5 (:mod:`oltr_bench.splits.profile`);
* val: 20 images per class, also drawn from the train images, disjoint from train;
* test: all 50,000 validation images (50 per class);
* open: the ILSVRC-2010 validation images of the 360 classes that are not in ILSVRC-2012
  (18,000 images), label -1.

Layouts read (``--root``): ``train/<wnid>/`` with ``val/<wnid>/`` (torchvision, ``valprep.sh``),
or a flat ``val/`` labelled by the devkit (``ILSVRC2012_validation_ground_truth.txt`` plus
``meta.mat`` or ``map_clsloc.txt``, or just ``ILSVRC2012_devkit_t12.tar.gz``), and the Kaggle tree
``ILSVRC/Data/CLS-LOC/{train,val}`` with ``LOC_val_solution.csv``. List paths are relative to the
folder holding ``train/`` and ``val/``, so with per-wnid val folders they look exactly like the
released ones (``train/n01440764/n01440764_190.JPEG``, ``val/n01440764/ILSVRC2012_val_00029930.JPEG``).
"""

from __future__ import annotations

import csv
import io
import logging
import re
import tarfile
from collections import Counter
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np

from oltr_bench.errors import OltrError
from oltr_bench.registry import DATASETS
from oltr_bench.splits.official import Release
from oltr_bench.splits.builder import build_lt_split
from oltr_bench.splits.format import SplitDir
from oltr_bench.splits.profile import Profile
from oltr_bench.splits.scan import (
    find_file,
    finish_test_list,
    list_images,
    missing_images,
    progress_bar,
    read_text,
    scan_class_folders,
    subdirectories,
)
from oltr_bench.splits.spec import DECOUPLING_RELEASE, OLTR_RELEASE, ReleasedDataset, write_checked_split

log = logging.getLogger(__name__)

WNID = re.compile(r"^n\d{8}$")
VAL_2012 = re.compile(r"^ILSVRC2012_val_(\d{8})\.JPEG$", re.IGNORECASE)
VAL_2010 = re.compile(r"^ILSVRC2010_val_(\d{8})\.JPEG$", re.IGNORECASE)
DEFAULT_PROFILE = Profile("pareto", alpha=6.0, max_count=1280, min_count=5)
DEFAULT_VAL_PER_CLASS = 20
VAL_IMAGES_2012 = 50_000
OPEN_CLASSES_2010 = 360  # ILSVRC-2010 classes absent from ILSVRC-2012 (18,000 = 360 x 50 open images)
_SKIP = ("train", "val", "test", "Data", "Annotations", "ImageSets")


def wnids() -> list[str]:
    """The 1000 ILSVRC-2012 class wnids in label order (sorted)."""
    text = resources.files("oltr_bench.splits_data").joinpath("imagenet_wnids.txt").read_text("utf-8")
    return text.split()


def _dialect_of(split: str, path: str) -> str | None:
    parts = path.split("/")
    if split == "open":
        return "oltr" if len(parts) == 1 else None
    top = "val" if split == "test" else "train"
    if parts[0] != top:
        return None
    if len(parts) == 3 and WNID.match(parts[1]):
        return "oltr"
    # LFME's edited test list drops the wnid folder (val/ILSVRC2012_val_<n>.JPEG).
    return "flat" if split == "test" and len(parts) == 2 else None


def _class_of(dialect: str, path: str) -> str | None:
    parts = path.split("/")
    return parts[1] if len(parts) == 3 else None


def _layout_hint(root: Path, split: str, missing: list[str]) -> str:
    if split == "test" and missing and missing[0].count("/") == 2 and (root / "val").is_dir():
        if any(VAL_2012.match(p[4:]) for p in list_images(root / "val", "val/", recursive=False)[:1]):
            return (
                "val/ is flat but the released test list expects val/<wnid>/ folders: sort the validation images into "
                "per-wnid folders (torchvision's ImageNet or valprep.sh do it), or generate the split without --official"
            )
    if split == "open":
        return "the open images are ILSVRC2010_val_*.JPEG files: pass --open-root with the folder that holds them"
    return ""


IMAGENET_LT = Release("imagenet_lt", "ImageNet_LT", wnids, _dialect_of, _class_of, _layout_hint)


def data_root(root: Path, required: bool = True) -> Path:
    """The folder holding ``train/`` and ``val/``: ``root`` itself or the Kaggle ``ILSVRC/Data/CLS-LOC``.

    Without ``required`` a root that has neither is returned as it is (the importer then reports
    the images it cannot find).
    """
    if not root.is_dir():
        raise OltrError(f"--root {root} does not exist or is not a directory; expected the ILSVRC-2012 folder with train/ and val/")
    for candidate in (root, root / "ILSVRC" / "Data" / "CLS-LOC", root / "Data" / "CLS-LOC", root / "CLS-LOC"):
        if (candidate / "train").is_dir():
            return candidate
    if not required:
        return root
    raise OltrError(
        f"unknown ImageNet layout under --root {root}: expected train/<wnid>/ (with val/ next to it) in it or in "
        "ILSVRC/Data/CLS-LOC/ (the Kaggle tree); extract ILSVRC2012_img_train.tar and its 1000 inner tars first"
    )


def scan_train(base: Path, progress: bool) -> dict[str, list[str]]:
    """Training images per wnid (paths ``train/<wnid>/<file>``), after checking the 1000 class folders."""
    train = base / "train"
    folders = subdirectories(train)
    expected = wnids()
    found = set(folders)
    missing = [w for w in expected if w not in found]
    extra = [f for f in folders if WNID.match(f) and f not in set(expected)]
    if missing or extra:
        hint = " (an ILSVRC-2010 or ImageNet-21k copy?)" if extra else ""
        raise OltrError(
            f"{train} is not the ILSVRC-2012 train set{hint}: {len(missing)} of its 1000 class folders are missing"
            + (f" (e.g. {', '.join(missing[:3])})" if missing else "")
            + (f" and {len(extra)} wnid folders are not ILSVRC-2012 classes (e.g. {', '.join(extra[:3])})" if extra else "")
        )
    return scan_class_folders(train, expected, prefix="train/", progress=progress)


def _meta_wnids(data: bytes | Path, id_field: str, where: str) -> dict[int, str]:
    """``{ILSVRC ID: wnid}`` of the leaf classes in a devkit ``meta.mat``."""
    from scipy.io import loadmat

    try:
        synsets = loadmat(io.BytesIO(data) if isinstance(data, bytes) else data, squeeze_me=True)["synsets"]
    except Exception as exc:  # scipy raises several types for damaged or non-MAT files
        raise OltrError(f"{where} is not a readable devkit meta.mat: {exc}") from None
    names = synsets.dtype.names or ()
    if id_field not in names or "WNID" not in names:
        raise OltrError(f"{where} has no {id_field}/WNID fields; expected the ILSVRC devkit's meta.mat for that year")
    table = {}
    for row in np.atleast_1d(synsets):
        ident = int(row[id_field])
        if ident <= 1000:
            table[ident] = str(row["WNID"])
    if len(table) != 1000:
        raise OltrError(f"{where}: expected 1000 leaf classes with {id_field} 1..1000, found {len(table)}")
    return table


def _ground_truth(text: str, where: str) -> list[int]:
    try:
        ids = [int(v) for v in text.split()]
    except ValueError:
        raise OltrError(f"{where}: expected one class ID per line") from None
    if ids and not 1 <= min(ids) <= max(ids) <= 1000:
        raise OltrError(f"{where}: class IDs must lie in 1..1000")
    return ids


def _devkit_labels(root: Path, year: int) -> tuple[dict[int, str], str]:
    """``{val image number: wnid}`` from a devkit (extracted, or its tar.gz) found under ``root``."""
    gt_name = f"ILSVRC{year}_validation_ground_truth.txt"
    id_field = f"ILSVRC{year}_ID"
    gt = find_file([root], [gt_name], skip=_SKIP)
    table: dict[int, str] | None = None
    if gt is not None:
        meta = find_file([gt.parent, root], ["meta.mat"], skip=_SKIP)
        clsloc = find_file([gt.parent, root], ["map_clsloc.txt"], skip=_SKIP) if year == 2012 else None
        if meta is not None:
            table = _meta_wnids(meta, id_field, str(meta))
        elif clsloc is not None:
            table = {}
            for lineno, line in enumerate(read_text(clsloc, "the class map").splitlines(), 1):
                parts = line.split()
                if len(parts) < 2 or not WNID.match(parts[0]) or not parts[1].isdigit():
                    raise OltrError(f"{clsloc}:{lineno}: expected '<wnid> <ILSVRC2012_ID> <name>', found {line!r}")
                table[int(parts[1])] = parts[0]
            if sorted(table) != list(range(1, 1001)):
                raise OltrError(f"{clsloc}: expected the IDs 1..1000 once each, found {len(table)} distinct IDs")
        if table is not None:
            ids = _ground_truth(read_text(gt, "the validation ground truth"), str(gt))
            return {i + 1: table[c] for i, c in enumerate(ids)}, str(gt)
    tar_names = ["ILSVRC2012_devkit_t12.tar.gz"] if year == 2012 else ["ILSVRC2010_devkit-1.0.tar.gz", "devkit-1.0.tar.gz"]
    tar_path = find_file([root], tar_names, max_depth=2, skip=_SKIP)
    if tar_path is not None:
        try:
            with tarfile.open(tar_path) as tar:
                members = {m.name.rsplit("/", 1)[-1]: m for m in tar.getmembers() if m.isfile()}
                if gt_name not in members or "meta.mat" not in members:
                    raise OltrError(f"{tar_path} has no data/{gt_name} and data/meta.mat; expected the ILSVRC {year} devkit")
                table = _meta_wnids(tar.extractfile(members["meta.mat"]).read(), id_field, f"{tar_path}:meta.mat")
                text = tar.extractfile(members[gt_name]).read().decode("ascii")
        except (tarfile.TarError, OSError) as exc:
            raise OltrError(f"cannot read the devkit archive {tar_path}: {exc}") from None
        ids = _ground_truth(text, f"{tar_path}:{gt_name}")
        return {i + 1: table[c] for i, c in enumerate(ids)}, str(tar_path)
    raise OltrError(
        f"the validation images under {root} are in one flat folder, so their labels must come from the ILSVRC {year} "
        f"devkit: put {gt_name} with meta.mat" + (" (or map_clsloc.txt)" if year == 2012 else "")
        + f", or the devkit archive {tar_names[0]}, under {root}"
        + (" -- or LOC_val_solution.csv for the Kaggle tree, or sort val/ into per-wnid folders" if year == 2012 else
           " (the ImageNet_LT_open/ folder shipped with the released lists has no labels: use it with --official)")
    )


def _kaggle_labels(root: Path, base: Path) -> tuple[dict[int, str], str] | None:
    """``{val image number: wnid}`` from Kaggle's ``LOC_val_solution.csv`` (class = first token)."""
    csv_path = find_file([root, *list(base.parents)[:3]], ["LOC_val_solution.csv"], max_depth=0)
    if csv_path is None:
        return None
    labels: dict[int, str] = {}
    with open(csv_path, newline="", encoding="utf-8") as fh:
        reader = csv.reader(fh)
        header = next(reader, None)
        if header is None or [h.strip() for h in header[:2]] != ["ImageId", "PredictionString"]:
            raise OltrError(f"{csv_path}: expected the header 'ImageId,PredictionString'")
        for lineno, row in enumerate(reader, 2):
            match = VAL_2012.match(row[0] + ".JPEG") if row else None
            if not match or len(row) < 2 or not row[1].split():
                raise OltrError(f"{csv_path}:{lineno}: expected 'ILSVRC2012_val_<8 digits>,<wnid> <box> ...'")
            number = int(match.group(1))
            if number in labels:
                raise OltrError(f"{csv_path}:{lineno}: {row[0]} appears twice")
            labels[number] = row[1].split()[0]
    return labels, str(csv_path)


def _check_val_folders(val: Path, per_class: dict[str, list[str]], allow_missing: bool) -> None:
    """Stop on an incomplete per-wnid val/ (as the flat layout does against its labels) unless ``allow_missing``.

    Without a label file the reference is the set itself: ILSVRC-2012 has a folder for each of
    the 1000 classes and the same number of images (50) in each, so an absent folder, or a
    folder with fewer images than most, means images are missing.
    """
    absent = [w for w in wnids() if w not in per_class]
    sizes = Counter(len(paths) for paths in per_class.values())
    usual = max(sizes, key=lambda n: (sizes[n], n)) if sizes else 0
    short = sorted(w for w, paths in per_class.items() if len(paths) < usual)
    problems = []
    if absent:
        problems.append(
            f"{val} has wnid folders for {len(per_class)} of the 1000 ILSVRC-2012 classes; missing e.g. "
            + ", ".join(absent[:3])
        )
    if short:
        problems.append(
            f"{len(short)} class folders in {val} hold fewer than the {usual} validation images of the others, e.g. "
            + ", ".join(f"{w} ({len(per_class[w])})" for w in short[:3])
        )
    if problems:
        missing_images("; ".join(problems), allow_missing)
    total = sum(len(paths) for paths in per_class.values())
    if total != VAL_IMAGES_2012:
        log.info(f"note: {val} holds {total:,} validation images; ILSVRC-2012 has {VAL_IMAGES_2012:,} (50 per class)")


def scan_val(root: Path, base: Path, progress: bool, allow_missing: bool) -> tuple[list[tuple[str, int]], str]:
    """The test list (all validation images, label = sorted-wnid index) and where its labels came from."""
    val = base / "val"
    if not val.is_dir():
        raise OltrError(f"{val} does not exist; expected the 50,000 ILSVRC-2012 validation images (per-wnid folders or flat)")
    index = {w: i for i, w in enumerate(wnids())}
    folders = [f for f in subdirectories(val) if WNID.match(f)]
    flat = [p for p in list_images(val, "val/", recursive=False) if VAL_2012.match(p[4:])]
    if folders and flat:
        raise OltrError(
            f"{val} holds both {len(folders)} wnid folders and {len(flat):,} loose validation images; "
            "expected one layout (remove the loose copies or the folders)"
        )
    entries: list[tuple[str, int]] = []
    if folders:
        unknown = [f for f in folders if f not in index]
        if unknown:
            raise OltrError(f"{val} has wnid folders that are not ILSVRC-2012 classes, e.g. {', '.join(unknown[:3])}")
        per_class = scan_class_folders(val, folders, prefix="val/", progress=progress)
        _check_val_folders(val, per_class, allow_missing)
        for wnid, paths in per_class.items():
            entries += [(p, index[wnid]) for p in paths]
        source = f"{val}/<wnid>/ folders"
    else:
        found = _kaggle_labels(root, base) or _devkit_labels(root, 2012)
        labels, source = found
        for p in flat:
            number = int(VAL_2012.match(p[4:]).group(1))
            if number not in labels:
                raise OltrError(f"{base / p} has no label in {source}")
            wnid = labels[number]
            if wnid not in index:
                raise OltrError(f"{source} labels {p} as {wnid}, which is not an ILSVRC-2012 class")
            entries.append((p, index[wnid]))
        if len(flat) < len(labels):
            present = {int(VAL_2012.match(p[4:]).group(1)) for p in flat}
            absent = sorted(n for n in labels if n not in present)
            message = (
                f"{val} has {len(flat):,} of the {len(labels):,} validation images labelled in {source}; "
                f"missing e.g. {', '.join(f'ILSVRC2012_val_{n:08d}.JPEG' for n in absent[:3])}"
            )
            missing_images(message, allow_missing)
    entries = finish_test_list(entries, where=f" under {val}", empty=f"{val} has no validation images (ILSVRC2012_val_<8 digits>.JPEG)")
    return entries, source


def scan_open_2010(open_root: Path, progress: bool) -> tuple[list[tuple[str, int]], dict[str, Any]]:
    """ILSVRC-2010 validation images of the classes not in ILSVRC-2012 (label -1), relative to ``open_root``."""
    if not open_root.is_dir():
        raise OltrError(f"--open-root {open_root} does not exist or is not a directory; expected the ILSVRC-2010 validation images and devkit")
    images: list[str] = []
    for folder, prefix in ((open_root, ""), (open_root / "val", "val/")):
        if folder.is_dir():
            images = [p for p in list_images(folder, prefix, recursive=False) if VAL_2010.match(p.rsplit("/", 1)[-1])]
            if images:
                break
    if not images:
        raise OltrError(f"--open-root {open_root} has no ILSVRC2010_val_<8 digits>.JPEG files (looked in it and in val/)")
    labels, source = _devkit_labels(open_root, 2010)
    known = set(wnids())
    entries, classes = [], set()
    for p in progress_bar(images, desc="labelling ILSVRC-2010 val", enabled=progress, unit="image"):
        number = int(VAL_2010.match(p.rsplit("/", 1)[-1]).group(1))
        if number not in labels:
            raise OltrError(f"{open_root / p} has no label in {source}")
        if labels[number] not in known:
            entries.append((p, -1))
            classes.add(labels[number])
    if len(classes) != OPEN_CLASSES_2010:
        log.info(
            f"note: {len(classes)} ILSVRC-2010 classes of {source} are not in ILSVRC-2012; the released open set "
            f"has {OPEN_CLASSES_2010} (x 50 images)"
        )
    return entries, {"labels": source, "open_classes": sorted(classes)}


@DATASETS.register("imagenet_lt", aliases=("imagenet",))
class ImageNetLT(ReleasedDataset):
    """ImageNet-LT (1000 classes, Pareto alpha=6, 1280..5 per class) and its ILSVRC-2010 open set."""

    name = "imagenet_lt"
    needs = (
        "--root: ILSVRC-2012 train/<wnid>/ and val/ (per-wnid folders, or flat with the devkit or Kaggle "
        "LOC_val_solution.csv; the Kaggle ILSVRC/Data/CLS-LOC tree works too); --open-root: ILSVRC-2010 val images "
        "+ devkit (ILSVRC2010_validation_ground_truth.txt, meta.mat) for the open set; --official DIR: the released "
        "ImageNet_LT_*.txt lists instead of generating"
    )
    sources = (
        OLTR_RELEASE, DECOUPLING_RELEASE,
        ("ILSVRC-2012 (train, val) and ILSVRC-2010 (val + devkit, the open set)", "https://image-net.org/download.php (registration)"),
    )
    release = IMAGENET_LT
    root_help = "the ILSVRC-2012 folder with train/ and val/"
    default_profile = DEFAULT_PROFILE
    default_val_per_class = DEFAULT_VAL_PER_CLASS

    def lists_root(self, root: Path) -> Path:
        return data_root(root, required=False)

    def generate(
        self, out_root: Path, root: Path, *, seed: int, overwrite: bool, progress: bool, open_root: Path | None,
        allow_missing: bool, profile: Profile, val_per_class: int,
    ) -> SplitDir:
        base = data_root(root)
        train_files = scan_train(base, progress)
        test, test_source = scan_val(root, base, progress, allow_missing)
        classes = wnids()
        built = build_lt_split(
            train_files, classes, [], profile, val_per_class=val_per_class, test_per_class=0, open_per_class=None,
            seed=seed, source_name=str(base / "train"),
        )
        lists = {"train": built.lists["train"], "val": built.lists["val"], "test": test}
        roots = {split: str(base.resolve()) for split in lists}
        source: dict[str, Any] = {
            "kind": "generated",
            "generator": "imagenet_lt",
            "seed": seed,
            "profile": profile.to_dict(),
            "val_per_class": val_per_class,
            "val_from": "train images, disjoint from train",
            "test": "all ILSVRC-2012 validation images",
            "test_labels": test_source,
            "allow_missing": allow_missing,  # True: the test list may lack missing validation images
            "found": {"train_images": sum(len(v) for v in train_files.values()), "val_images": len(test)},
        }
        if open_root is not None:
            lists["open"], open_info = scan_open_2010(Path(open_root), progress)
            roots["open"] = str(Path(open_root).resolve())
            source["open"] = {"from": "ILSVRC-2010 validation images of classes not in ILSVRC-2012", **open_info}
        else:
            source["open"] = None
            log.info(
                "no open split: ImageNet-LT's open set is the ILSVRC-2010 validation images of the 360 classes not "
                "in ILSVRC-2012; pass --open-root with the ILSVRC-2010 val images and devkit to add it"
            )
        return write_checked_split(
            out_root / self.name, dataset=self.name, classes=classes, lists=lists, roots=roots,
            source=source, overwrite=overwrite, progress=progress,
        )

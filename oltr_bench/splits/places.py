"""Places-LT from the user's Places365-Standard copy, and its Places-Extra69 open set.

Protocol (Liu et al. 2019; what the released lists show):

* 365 classes labelled in the released Places-LT order, which is ``categories_places365.txt``
  order except for a permutation of five classes (:data:`PLACES_LT_TO_OFFICIAL`): desert_road,
  desert/sand, desert/vegetation are 116, 117, 118 (official 118, 116, 117) and field_road,
  field/wild are 141, 142 (official 142, 141). Generated splits use the same labels, so models and
  class-count profiles carry over between generated and released splits;
* train: a long-tailed subset of Places365-Standard train from 4980 down to 5 per class. The
  paper says alpha = 6 (184.5K images) but the released lists are a later, more skewed draw
  (62,500 images; the author gives alpha = 1.34, OLTR issue #38). The default, alpha = 1.54, is
  the profile whose expected shape is closest to the released one (59.8K images, 130/166/69
  classes with >100/20-100/<20 vs 131/163/71); ``--alpha 1.34 --max 4980 --min 5`` gives the
  author's value and ``--counts released`` the released class sizes exactly;
* val: 20 images per class from the train images, disjoint from train;
* test: all 36,500 Places365 validation images (100 per class);
* open: Places-Extra69 test images (6,600 in the release), label -1.

Layouts read (``--root``): ``data_256/<letter>/<class>/`` (or torchvision's ``data_256_standard``)
with the flat ``val_256/`` labelled by ``places365_val.txt`` (``places365_train_standard.txt`` is
used for the train file names when present, which avoids a scan), and the "easyformat" tree
``train/<class>/``, ``val/<class>/`` (``/`` inside a class name becomes ``-``).
"""

from __future__ import annotations

import logging
import re
from importlib import resources
from pathlib import Path
from typing import Any

from oltr_bench.errors import OltrError
from oltr_bench.registry import DATASETS
from oltr_bench.splits.builder import build_lt_split
from oltr_bench.splits.format import SplitDir
from oltr_bench.splits.official import Release
from oltr_bench.splits.profile import Profile
from oltr_bench.splits.scan import (
    find_file,
    finish_test_list,
    list_images,
    missing_images,
    progress_bar,
    read_text,
    scan_class_folders,
)
from oltr_bench.splits.spec import DECOUPLING_RELEASE, OLTR_RELEASE, ReleasedDataset, write_checked_split

log = logging.getLogger(__name__)

# Places-LT label -> index in categories_places365.txt, where they differ (all lists use it).
PLACES_LT_TO_OFFICIAL = {116: 118, 117: 116, 118: 117, 141: 142, 142: 141}
VAL_IMAGE = re.compile(r"^Places365_val_(\d{8})\.jpg$")
DEFAULT_PROFILE = Profile("pareto", alpha=1.54, max_count=4980, min_count=5)
DEFAULT_VAL_PER_CLASS = 20
EXPECTED_OPEN = 6600
_TRAIN_DIRS = ("data_256", "data_256_standard", "data_large", "data_large_standard")
_VAL_DIRS = {"data_256": "val_256", "data_256_standard": "val_256", "data_large": "val_large", "data_large_standard": "val_large"}
_SKIP = ("train", "val", "test", *_TRAIN_DIRS, "val_256", "val_large", "test_256", "test_large")


def places_lt_classes() -> list[str]:
    """Class names (``airfield``, ``apartment_building/outdoor``, ...) in Places-LT label order."""
    return resources.files("oltr_bench.splits_data").joinpath("places_lt_classes.txt").read_text("utf-8").split()


def official_to_places_lt() -> dict[int, int]:
    """``categories_places365.txt`` index -> Places-LT label."""
    table = {i: i for i in range(len(places_lt_classes()))}
    table.update({official: lt for lt, official in PLACES_LT_TO_OFFICIAL.items()})
    return table


def tree_folder(name: str) -> str:
    """The class folder in ``data_256``: ``a/airfield``, ``a/apartment_building/outdoor``."""
    return f"{name[0]}/{name}"


def easy_folder(name: str) -> str:
    """The class folder in the easyformat tree: ``apartment_building-outdoor``."""
    return name.replace("/", "-")


def _class_of(dialect: str, path: str) -> str | None:
    parts = path.split("/")
    if path.startswith(("data_256/", "data_256_standard/")):
        return "/".join(parts[2:-1])
    if path.startswith(("train/", "val/")) and len(parts) == 3:
        return parts[1].replace("-", "/")
    return None


def _dialect_of(split: str, path: str) -> str | None:
    if split == "open":
        return "oltr" if "/" not in path else None
    if split == "test":
        if path.startswith("val_256/") and path.count("/") == 1:
            return "oltr"
        return "decoupling" if path.startswith("val/") and path.count("/") == 2 else None
    if path.startswith("data_256/"):
        return "oltr"
    return "decoupling" if path.startswith("train/") and path.count("/") == 2 else None


def _layout_hint(root: Path, split: str, missing: list[str]) -> str:
    if not missing:
        return ""
    first = missing[0]
    if first.startswith(("data_256/", "val_256/")):
        if (root / "data_256_standard").is_dir():
            return "torchvision calls the train folder data_256_standard; the OLTR lists expect data_256 (add a link data_256 -> data_256_standard)"
        if (root / "train").is_dir():
            return "--root looks like the easyformat tree (train/<class>/); these lists use OLTR paths (data_256/, val_256/): use the Decoupling-dialect lists or the data_256 copy"
    if first.startswith(("train/", "val/")) and (root / "data_256").is_dir():
        return "--root holds data_256/ (OLTR layout); these lists use easyformat paths (train/<class>/): use the OLTR-dialect lists or the easyformat copy"
    return ""


PLACES_LT = Release("places_lt", "Places_LT", places_lt_classes, _dialect_of, _class_of, _layout_hint)


def _find_tree(root: Path) -> tuple[Path, str, str]:
    """``(base, train prefix, layout)``: where list paths start and which layout ``root`` has."""
    if not root.is_dir():
        raise OltrError(f"--root {root} does not exist or is not a directory; expected the Places365-Standard folder")
    for name in _TRAIN_DIRS:
        if (root / name).is_dir():
            if name.startswith("data_large"):
                log.info(f"note: {root / name} holds the high-resolution images; the benchmark uses the 256x256 ones (data_256)")
            return root, f"{name}/", "data_256"
    for base in (root, root / "places365_standard"):
        if (base / "train" / "airfield").is_dir():
            return base, "train/", "easyformat"
    raise OltrError(
        f"unknown Places365 layout under --root {root}: expected data_256/ (or data_256_standard/) with val_256/, or the "
        "easyformat tree train/<class>/ and val/<class>/ (extract train_256_places365standard.tar and val_256.tar)"
    )


def _train_from_file_list(root: Path, base: Path, prefix: str) -> dict[str, list[str]] | None:
    listing = find_file([root], ["places365_train_standard.txt"], max_depth=2, skip=_SKIP)
    if listing is None:
        return None
    names = places_lt_classes()
    to_lt = official_to_places_lt()
    files: dict[str, list[str]] = {name: [] for name in names}
    for lineno, line in enumerate(read_text(listing, "the train list").splitlines(), 1):
        parts = line.split()
        if not parts:
            continue
        try:
            path, label = parts[0], int(parts[1])
            name = names[to_lt[label]]
        except (IndexError, ValueError, KeyError):
            raise OltrError(f"{listing}:{lineno}: expected '/<letter>/<class>/<file>.jpg <0..364>'") from None
        if not path.startswith(f"/{tree_folder(name)}/"):
            raise OltrError(f"{listing}:{lineno}: {path} is not in the folder of class {label} ({tree_folder(name)})")
        files[name].append(prefix + path[1:])
    for paths in files.values():
        paths.sort()
    log.info(f"train file names from {listing}")
    return files


def scan_train(root: Path, base: Path, prefix: str, layout: str, progress: bool) -> dict[str, list[str]]:
    """Training images per class name (Places-LT names), paths relative to ``base``."""
    names = places_lt_classes()
    if layout == "data_256":
        listed = _train_from_file_list(root, base, prefix)
        if listed is not None:
            return listed
        folders = {tree_folder(n): n for n in names}
    else:
        folders = {easy_folder(n): n for n in names}
    # Two-level classes (arena/performance) sit inside a folder that is not a class itself: list
    # each class folder without descending.
    found = scan_class_folders(base / prefix.rstrip("/"), sorted(folders), prefix=prefix, progress=progress,
                               what="the train folder", recursive=False)
    return {folders[f]: paths for f, paths in found.items()}


def scan_val(root: Path, base: Path, prefix: str, layout: str, progress: bool, allow_missing: bool) -> tuple[list[tuple[str, int]], str]:
    """The test list: every Places365 validation image with its Places-LT label."""
    names = places_lt_classes()
    entries: list[tuple[str, int]] = []
    if layout == "easyformat":
        val = base / "val"
        per_class = scan_class_folders(val, [easy_folder(n) for n in names], prefix="val/", progress=progress,
                                       what="the val folder", recursive=False)
        for label, name in enumerate(names):
            entries += [(p, label) for p in per_class[easy_folder(name)]]
        source = f"{val}/<class>/ folders"
    else:
        val_dir = _VAL_DIRS[prefix.rstrip("/")]
        val = base / val_dir
        if not val.is_dir():
            raise OltrError(f"{val} does not exist; expected the flat Places365 validation images next to {prefix.rstrip('/')}")
        labels_file = find_file([root], ["places365_val.txt"], max_depth=2, skip=_SKIP)
        if labels_file is None:
            raise OltrError(
                f"{val} is flat, so its labels must come from places365_val.txt (in filelist_places365-standard.tar); "
                f"put it under {root}"
            )
        to_lt = official_to_places_lt()
        labels: dict[str, int] = {}
        for lineno, line in enumerate(read_text(labels_file, "the val labels").splitlines(), 1):
            parts = line.split()
            if not parts:
                continue
            if len(parts) != 2 or not VAL_IMAGE.match(parts[0]) or not parts[1].isdigit() or int(parts[1]) not in to_lt:
                raise OltrError(f"{labels_file}:{lineno}: expected 'Places365_val_<8 digits>.jpg <0..364>', found {line!r}")
            if parts[0] in labels:
                raise OltrError(f"{labels_file}:{lineno}: {parts[0]} appears twice")
            labels[parts[0]] = to_lt[int(parts[1])]
        images = [p for p in list_images(val, f"{val_dir}/", recursive=False) if VAL_IMAGE.match(p.rsplit("/", 1)[-1])]
        for p in progress_bar(images, desc="labelling val", enabled=progress, unit="image"):
            name = p.rsplit("/", 1)[-1]
            if name not in labels:
                raise OltrError(f"{base / p} has no label in {labels_file}")
            entries.append((p, labels[name]))
        if len(images) < len(labels):
            present = {p.rsplit("/", 1)[-1] for p in images}
            absent = sorted(n for n in labels if n not in present)
            message = f"{val} has {len(images):,} of the {len(labels):,} images labelled in {labels_file}; missing e.g. {', '.join(absent[:3])}"
            missing_images(message, allow_missing)
        source = str(labels_file)
    entries = finish_test_list(entries, where="", empty=f"no Places365 validation images (Places365_val_<8 digits>.jpg) under {base}")
    return entries, source


def scan_open(open_root: Path) -> list[tuple[str, int]]:
    """Every image under ``open_root`` (the Places-Extra69 test images), label -1."""
    if not open_root.is_dir():
        raise OltrError(f"--open-root {open_root} does not exist or is not a directory; expected the Places-Extra69 test images")
    images = list_images(open_root, "")
    if not images:
        raise OltrError(f"--open-root {open_root} has no images; expected the Places-Extra69 test images")
    if len(images) != EXPECTED_OPEN:
        log.info(f"note: {open_root} has {len(images):,} images; the released Places-LT open set has {EXPECTED_OPEN:,} (66 classes x 100)")
    return [(p, -1) for p in images]


@DATASETS.register("places_lt", aliases=("places",))
class PlacesLT(ReleasedDataset):
    """Places-LT (365 classes, 4980..5 per class) and its Places-Extra69 open set."""

    name = "places_lt"
    needs = (
        "--root: Places365-Standard 256x256 (data_256/ or data_256_standard/ with val_256/ and places365_val.txt, or "
        "the easyformat train/<class>/ and val/<class>/); --open-root: a folder of Places-Extra69 test images for the "
        "open set; --official DIR: the released Places_LT_*.txt lists (either path dialect) instead of generating"
    )
    sources = (
        OLTR_RELEASE, DECOUPLING_RELEASE,
        ("Places365-Standard 256x256 and Places-Extra69 (the open set)", "http://places2.csail.mit.edu/download.html"),
    )
    release = PLACES_LT
    root_help = "the Places365-Standard folder"
    default_profile = DEFAULT_PROFILE
    default_val_per_class = DEFAULT_VAL_PER_CLASS

    def generate(
        self, out_root: Path, root: Path, *, seed: int, overwrite: bool, progress: bool, open_root: Path | None,
        allow_missing: bool, profile: Profile, val_per_class: int,
    ) -> SplitDir:
        base, prefix, layout = _find_tree(root)
        names = places_lt_classes()
        train_files = scan_train(root, base, prefix, layout, progress)
        test, test_source = scan_val(root, base, prefix, layout, progress, allow_missing)
        built = build_lt_split(
            train_files, names, [], profile, val_per_class=val_per_class, test_per_class=0, open_per_class=None,
            seed=seed, source_name=str(base / prefix),
        )
        lists = {"train": built.lists["train"], "val": built.lists["val"], "test": test}
        roots = {split: str(base.resolve()) for split in lists}
        source: dict[str, Any] = {
            "kind": "generated",
            "generator": "places_lt",
            "seed": seed,
            "layout": layout,
            "profile": profile.to_dict(),
            "val_per_class": val_per_class,
            "val_from": "train images, disjoint from train",
            "test": "all Places365-Standard validation images",
            "test_labels": test_source,
            "allow_missing": allow_missing,  # True: the test list may lack missing validation images
            "labels": "Places-LT order (categories_places365.txt with 116-118 and 141-142 permuted)",
            "found": {"train_images": sum(len(v) for v in train_files.values()), "val_images": len(test)},
        }
        if open_root is not None:
            lists["open"] = scan_open(Path(open_root))
            roots["open"] = str(Path(open_root).resolve())
            source["open"] = {"from": "Places-Extra69 test images", "folder": roots["open"]}
        else:
            source["open"] = None
            log.info("no open split: Places-LT's open set is the Places-Extra69 test images; pass --open-root with them to add it")
        return write_checked_split(
            out_root / self.name, dataset=self.name, classes=names, lists=lists, roots=roots,
            source=source, overwrite=overwrite, progress=progress,
        )

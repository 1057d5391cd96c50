"""ImageNet-LT generated from miniature ILSVRC-2012 trees in every val layout, and its 2010 open set."""

import json
import os
from collections import Counter

import pytest

from oltr_bench.errors import OltrError
from oltr_bench.registry import DATASETS
from oltr_bench.splits.format import load_split_dir
from oltr_bench.splits.imagenet import wnids
from oltr_bench.splits.profile import Profile
from tests.splits_trees import ilsvrc2010_tree, imagenet_tree, same_split, shuffle_listings

SMALL = Profile("pareto", alpha=6.0, max_count=5, min_count=1)


def build(root, out, **options):
    options.setdefault("profile", SMALL)
    options.setdefault("val_per_class", 1)
    return DATASETS.get("imagenet")().make_splits(out, seed=0, overwrite=False, progress=False, root=root, **options)


@pytest.fixture(scope="module")
def folders_tree(tmp_path_factory):
    root = tmp_path_factory.mktemp("ilsvrc2012")
    truth = imagenet_tree(root)
    return root, truth


def test_per_wnid_layout(folders_tree, tmp_path):
    root, truth = folders_tree
    split = build(root, tmp_path)
    assert split.path == tmp_path / "imagenet_lt" and split.prefix == "ImageNet_LT"
    names = wnids()
    assert split.classes == names and names == sorted(names) and len(names) == 1000
    # Test = every validation image, label = sorted-wnid index, path as in the released list.
    test = split.entries("test")
    assert len(test) == 1000
    assert all(p == f"val/{names[label]}/{p.rsplit('/', 1)[1]}" and truth[p.rsplit("/", 1)[1]] == names[label] for p, label in test)
    assert [label for _, label in test] == sorted(label for _, label in test)
    # Val: one train image per class; train: the profile's counts, every class in train/<its wnid>/.
    val = split.entries("val")
    assert Counter(label for _, label in val) == Counter(range(1000))
    train = split.entries("train")
    assert all(p.startswith(f"train/{names[label]}/") for p, label in train + val)
    assert sorted(split.train_counts, reverse=True) == SMALL.class_counts(1000)
    paths = [p for s in ("train", "val", "test") for p in split.ids(s)]
    assert len(paths) == len(set(paths))
    source = split.manifest["source"]
    assert source["profile"] == {"kind": "pareto", "alpha": 6.0, "max": 5, "min": 1} and source["seed"] == 0
    assert source["open"] is None and "open" not in split.manifest["files"]
    assert source["allow_missing"] is False
    assert split.manifest["roots"]["train"] == str(root.resolve())


def test_deterministic_whatever_the_listing_order(folders_tree, tmp_path, monkeypatch):
    root, _ = folders_tree
    ilsvrc2010_tree(tmp_path / "2010", ["n09999001", "n09999002"], open_per_class=4)
    first = build(root, tmp_path / "a", open_root=tmp_path / "2010")
    assert len(first.entries("open")) == 8
    shuffle_listings(monkeypatch)
    second = build(root, tmp_path / "b", open_root=tmp_path / "2010")
    same_split(first, second)
    other_seed = DATASETS.get("imagenet")().make_splits(
        tmp_path / "c", seed=1, overwrite=False, progress=False, root=root, profile=SMALL, val_per_class=1)
    assert other_seed.fingerprint != first.fingerprint
    assert other_seed.entries("test") == first.entries("test")


@pytest.mark.parametrize("layout", ["flat-meta", "flat-clsloc", "flat-tar", "kaggle"])
def test_flat_val_layouts_get_sorted_wnid_labels(layout, tmp_path):
    """The devkit's ID order is not the label order: labels must go through wnids."""
    truth = imagenet_tree(tmp_path / "in", train_per_class=3, val_per_class=2, val=layout)
    split = build(tmp_path / "in", tmp_path / "out", profile=Profile("pareto", alpha=6.0, max_count=2, min_count=1))
    names = wnids()
    test = split.entries("test")
    assert len(test) == 2000
    assert {p.rsplit("/", 1)[1]: names[label] for p, label in test} == truth
    assert all(p.startswith("val/ILSVRC2012_val_") for p, _ in test)
    if layout == "kaggle":
        assert split.manifest["roots"]["test"] == str((tmp_path / "in" / "ILSVRC" / "Data" / "CLS-LOC").resolve())


def test_open_set_from_ilsvrc2010(folders_tree, tmp_path, capsys):
    root, _ = folders_tree
    expected = ilsvrc2010_tree(tmp_path / "2010", ["n09999001", "n09999002"])
    split = build(root, tmp_path / "out", open_root=tmp_path / "2010")
    assert {p for p, _ in split.entries("open")} == {f"val/{n}" for n in expected}
    assert len(expected) == 6
    assert split.manifest["source"]["open"]["open_classes"] == ["n09999001", "n09999002"]
    assert "2 ILSVRC-2010 classes" in capsys.readouterr().err  # not the released 360: said plainly


def test_without_2010_data_it_says_so(folders_tree, tmp_path, capsys):
    build(folders_tree[0], tmp_path)
    assert "no open split" in capsys.readouterr().err


@pytest.mark.slow
def test_capacity_aware_counts_go_to_classes_that_can_hold_them(tmp_path):
    """A class with few images never gets a large count (ImageNet has classes of 732 and of 1300 images)."""
    imagenet_tree(tmp_path / "in", train_per_class=3)
    names = wnids()
    big = names[::2]  # 500 classes with 23 images, 500 with 3
    for w in big:
        for i in range(20):
            (tmp_path / "in" / "train" / w / f"{w}_extra{i}.JPEG").touch()
    profile = Profile("pareto", alpha=6.0, max_count=21, min_count=1)
    split = build(tmp_path / "in", tmp_path / "out", profile=profile)
    counts = dict(zip(names, split.train_counts))
    assert sorted(counts.values(), reverse=True) == profile.class_counts(1000)
    assert all(counts[w] <= 2 for w in names[1::2]) and max(counts.values()) == 21


def write_json(path, obj):
    path.write_text(json.dumps(obj))


@pytest.mark.parametrize(
    "prepare, message",
    [
        (lambda r: None, "unknown ImageNet layout"),
        (lambda r: (r / "train" / "n99999999").mkdir(parents=True), "is not the ILSVRC-2012 train set"),
    ],
)
def test_bad_roots(tmp_path, prepare, message):
    (tmp_path / "in").mkdir()
    prepare(tmp_path / "in")
    with pytest.raises(OltrError, match=message):
        build(tmp_path / "in", tmp_path / "out")
    assert not (tmp_path / "out" / "imagenet_lt").exists()


def test_missing_root(tmp_path):
    with pytest.raises(OltrError, match="does not exist or is not a directory"):
        build(tmp_path / "nope", tmp_path / "out")


def test_wrong_dataset_copy_is_named(folders_tree, tmp_path):
    root = tmp_path / "in"
    imagenet_tree(root, train_per_class=1)
    os.rename(root / "train" / "n01440764", root / "train" / "n99999999")
    with pytest.raises(OltrError, match=r"1 of its 1000 class folders are missing \(e.g. n01440764\) and 1 wnid folders.*n99999999"):
        build(root, tmp_path / "out")


def test_class_with_too_few_images_is_named(tmp_path):
    root = tmp_path / "in"
    imagenet_tree(root, train_per_class=3)
    for f in (root / "train" / "n01443537").iterdir():
        f.unlink()
    with pytest.raises(OltrError, match=r"class 'n01443537' in .*train has 0 images; it needs at least 2 \(0 test \+ 1 val"):
        build(root, tmp_path / "out", profile=Profile("pareto", alpha=6.0, max_count=2, min_count=1))


def test_flat_val_without_labels_names_what_is_needed(tmp_path):
    imagenet_tree(tmp_path / "in", train_per_class=3, val="flat-meta")
    os.remove(tmp_path / "in" / "ILSVRC2012_devkit_t12" / "data" / "meta.mat")
    os.remove(tmp_path / "in" / "ILSVRC2012_devkit_t12" / "data" / "ILSVRC2012_validation_ground_truth.txt")
    with pytest.raises(OltrError, match="ILSVRC2012_validation_ground_truth.txt with meta.mat"):
        build(tmp_path / "in", tmp_path / "out")


def test_val_in_both_layouts_is_rejected(folders_tree, tmp_path):
    root = tmp_path / "in"
    imagenet_tree(root, train_per_class=3)
    (root / "val" / "ILSVRC2012_val_00000001.JPEG").touch()
    with pytest.raises(OltrError, match="holds both 1000 wnid folders and 1 loose validation images"):
        build(root, tmp_path / "out", profile=Profile("pareto", alpha=6.0, max_count=2, min_count=1))


def test_duplicate_val_image_is_rejected(tmp_path):
    root = tmp_path / "in"
    imagenet_tree(root, train_per_class=3)
    (root / "val" / "n01443537" / "ILSVRC2012_val_00001000.JPEG").touch()
    with pytest.raises(OltrError, match="occur more than once .* ILSVRC2012_val_00001000.JPEG: val/n01440764/.*, val/n01443537/"):
        build(root, tmp_path / "out", profile=Profile("pareto", alpha=6.0, max_count=2, min_count=1))


def test_unreadable_image_is_named(tmp_path):
    root = tmp_path / "in"
    imagenet_tree(root, train_per_class=2)
    (root / "val" / "n01440764" / "ILSVRC2012_val_00001000.JPEG").unlink()
    os.symlink(root / "nowhere.JPEG", root / "val" / "n01440764" / "ILSVRC2012_val_00001000.JPEG")
    with pytest.raises(OltrError, match="1 missing and 0 unreadable test images .*val/n01440764/ILSVRC2012_val_00001000.JPEG"):
        build(root, tmp_path / "out", profile=Profile("pareto", alpha=6.0, max_count=1, min_count=1))
    assert not (tmp_path / "out" / "imagenet_lt").exists()


def test_incomplete_val_needs_allow_missing(tmp_path, capsys):
    root = tmp_path / "in"
    imagenet_tree(root, train_per_class=2, val="flat-clsloc")
    (root / "val" / "ILSVRC2012_val_00000007.JPEG").unlink()
    small = Profile("pareto", alpha=6.0, max_count=1, min_count=1)
    with pytest.raises(OltrError, match="999 of the 1,000 validation images .* missing e.g. ILSVRC2012_val_00000007.JPEG; pass --allow-missing"):
        build(root, tmp_path / "out", profile=small)
    split = build(root, tmp_path / "out", profile=small, allow_missing=True)
    assert split.manifest["files"]["test"]["lines"] == 999
    assert split.manifest["source"]["allow_missing"] is True  # it changed the test list
    assert "warning: " in capsys.readouterr().err


def test_ground_truth_with_wrong_length_is_rejected(tmp_path):
    root = tmp_path / "in"
    imagenet_tree(root, train_per_class=2, val="flat-clsloc")
    gt = root / "ILSVRC2012_validation_ground_truth.txt"
    gt.write_text(gt.read_text() + "1001\n")
    with pytest.raises(OltrError, match="class IDs must lie in 1..1000"):
        build(root, tmp_path / "out", profile=Profile("pareto", alpha=6.0, max_count=1, min_count=1))


def test_loaded_back_and_verified(folders_tree, tmp_path):
    split = build(folders_tree[0], tmp_path)
    again = load_split_dir(split.path)
    assert again.fingerprint == split.fingerprint and again.train_counts == split.train_counts


def test_open_root_without_the_2010_devkit(folders_tree, tmp_path):
    (tmp_path / "open").mkdir()
    (tmp_path / "open" / "ILSVRC2010_val_00000007.JPEG").touch()
    with pytest.raises(OltrError, match="ILSVRC2010_validation_ground_truth.txt with meta.mat.*use it with --official"):
        build(folders_tree[0], tmp_path / "out", open_root=tmp_path / "open")


def test_incomplete_per_wnid_val_needs_allow_missing(tmp_path, capsys):
    """Like the flat layout: missing validation images stop the split unless --allow-missing."""
    import shutil

    root = tmp_path / "in"
    imagenet_tree(root, train_per_class=2, val_per_class=2)
    names = wnids()
    for w in names[:3]:
        shutil.rmtree(root / "val" / w)
    small = Profile("pareto", alpha=6.0, max_count=1, min_count=1)
    with pytest.raises(OltrError, match=r"has wnid folders for 997 of the 1000 ILSVRC-2012 classes; missing e.g. "
                                        rf"{names[0]}, {names[1]}, {names[2]}; pass --allow-missing"):
        build(root, tmp_path / "out", profile=small)
    split = build(root, tmp_path / "out", profile=small, allow_missing=True)
    assert split.manifest["files"]["test"]["lines"] == 1994
    err = capsys.readouterr().err
    assert "warning: " in err and "note: " in err and "holds 1,994 validation images; ILSVRC-2012 has 50,000" in err


def test_per_wnid_val_folder_with_fewer_images_needs_allow_missing(tmp_path):
    root = tmp_path / "in"
    imagenet_tree(root, train_per_class=2, val_per_class=2)
    w = wnids()[7]
    next((root / "val" / w).iterdir()).unlink()
    small = Profile("pareto", alpha=6.0, max_count=1, min_count=1)
    with pytest.raises(OltrError, match=rf"1 class folders in .*val hold fewer than the 2 validation images of the others, e.g. {w} \(1\)"):
        build(root, tmp_path / "out", profile=small)
    assert build(root, tmp_path / "out", profile=small, allow_missing=True).manifest["files"]["test"]["lines"] == 1999

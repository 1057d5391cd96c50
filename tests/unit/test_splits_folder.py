"""The image-folder dataset (``--dataset folder``): default profile, errors, names, determinism."""

import json

import pytest

from oltr_bench.errors import OltrError
from oltr_bench.registry import DATASETS
from oltr_bench.splits.profile import PartialPareto, pareto_counts
from tests.splits_trees import same_split, shuffle_listings, touch

# The reviewer's tree: uneven class folders, the smallest just big enough.
UNEVEN = {"c0": 200, "c1": 150, "c2": 120, "c3": 90, "c4": 71, "c5": 100, "c6": 100, "c7": 100, "c8": 100, "c9": 60}


def folder_tree(root, sizes):
    for name, n in sizes.items():
        for j in range(n):
            touch(root / name / f"{j:04d}.jpg")
    return root


def build(root, out, **options):
    return DATASETS.get("folder")().make_splits(out, seed=0, overwrite=False, progress=False, root=root, **options)


@pytest.fixture(scope="module")
def uneven(tmp_path_factory):
    return folder_tree(tmp_path_factory.mktemp("ftree") / "ftree", UNEVEN)


def test_default_profile_fits_uneven_class_folders(uneven, tmp_path):
    """The default max is the largest whose profile fits every class, not the largest class's room."""
    split = build(uneven, tmp_path, val_per_class=10, test_per_class=20)
    source = split.manifest["source"]
    assert source["open_classes"] == ["c2", "c5"]  # seed 0 holds out two of the ten classes
    # Room for training images: 170, 120, 70, 70, 70, 60, 41, 30. With max 161 the 3rd largest
    # count would be 71 > 70; max 160 gives 160, 101, 70, 50, 35, 23, 13, 5.
    assert source["profile"] == {"kind": "pareto", "alpha": 6.0, "max": 160, "min": 5}
    assert source["profile_from_data"] == ["max", "min"]
    assert sorted(split.train_counts, reverse=True) == pareto_counts(8, 6.0, 160, 5) == [160, 101, 70, 50, 35, 23, 13, 5]
    for name, count in zip(split.classes, split.train_counts):
        assert count <= UNEVEN[name] - 30
    assert json.loads((split.path / "manifest.json").read_text())["source"]["profile"]["max"] == 160


def test_given_values_are_kept_and_the_rest_fitted(uneven, tmp_path):
    split = build(uneven, tmp_path, val_per_class=10, test_per_class=20, profile=PartialPareto(alpha=2.0, min_count=8))
    source = split.manifest["source"]
    assert source["profile"]["alpha"] == 2.0 and source["profile"]["min"] == 8
    assert source["profile_from_data"] == ["max"]
    assert min(split.train_counts) == 8


def test_too_few_images_names_the_class_folder_and_the_other_short_ones(uneven, tmp_path):
    # Known classes with seed 0: c0 c1 c3 c4 c6 c7 c8 c9 (c2, c5 held out); 71 needed.
    with pytest.raises(OltrError) as err:
        build(uneven, tmp_path, val_per_class=20, test_per_class=50)
    assert str(err.value) == (
        f"class folder {uneven / 'c9'} has 60 images; it needs at least 71 (50 test + 20 val + 1 train); "
        "lower --test-per-class/--val-per-class, or add images to the folder"
    )
    with pytest.raises(OltrError, match=rf"class folder {uneven / 'c9'} has 60 images; it needs at least 91 \(60 test \+ 20 val "
                                        r"\+ 11 train\); 2 more of the 8 known class folders are short too: c4 \(71\), c3 \(90\); "
                                        r"lower --test-per-class/--val-per-class/--min, or add images to these folders"):
        build(uneven, tmp_path, val_per_class=20, test_per_class=60, profile=PartialPareto(min_count=11))
    assert not (tmp_path / "ftree").exists()


@pytest.mark.parametrize("name", ["../escaped", "..", ".hidden", "a/b", "/abs", "", "with space", "café"])
def test_bad_names_are_refused_before_anything_is_written(tmp_path, name):
    root = folder_tree(tmp_path / "small", {"a": 4, "b": 4})
    with pytest.raises(OltrError, match=rf"--name {name!r} is not a valid split name: .*\[A-Za-z0-9\]\[A-Za-z0-9_.-\]\*"):
        build(root, tmp_path / "out" / "splits", name=name, val_per_class=1, test_per_class=1, open_classes=0)
    assert not (tmp_path / "out").exists() and not (tmp_path / "escaped").exists()


def test_names_are_lower_cased_and_derived_names_checked(tmp_path):
    root = folder_tree(tmp_path / "My-Birds", {"a": 4, "b": 4})
    options = dict(val_per_class=1, test_per_class=1, open_classes=0)
    assert build(root, tmp_path / "out", **options).path == tmp_path / "out" / "my_birds"
    assert build(root, tmp_path / "out", name="Birds.v2", **options).path == tmp_path / "out" / "birds.v2"
    odd = folder_tree(tmp_path / "(copy)", {"a": 4, "b": 4})
    with pytest.raises(OltrError, match=r"the split name '\(copy\)' \(from the folder name of --root .*\) is not a valid split name.*; choose one with --name"):
        build(odd, tmp_path / "out", **options)


def test_deterministic_whatever_the_listing_order(uneven, tmp_path, monkeypatch):
    first = build(uneven, tmp_path / "a", val_per_class=10, test_per_class=20)
    shuffle_listings(monkeypatch, seed=1)
    second = build(uneven, tmp_path / "b", val_per_class=10, test_per_class=20)
    same_split(first, second)
    assert second.manifest["source"] == first.manifest["source"]
    other = DATASETS.get("folder")().make_splits(tmp_path / "c", seed=1, overwrite=False, progress=False, root=uneven,
                                                  val_per_class=10, test_per_class=20)
    assert other.fingerprint != first.fingerprint

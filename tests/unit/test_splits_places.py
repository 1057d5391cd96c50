"""Places-LT generated from miniature Places365 trees: layouts, the label permutation, open set, errors."""

from collections import Counter

import pytest

from oltr_bench.errors import OltrError
from oltr_bench.registry import DATASETS
from oltr_bench.splits.places import DEFAULT_PROFILE, official_to_places_lt, places_lt_classes
from oltr_bench.splits.profile import Profile, pareto_counts, released_counts, shot_groups
from tests.splits_trees import places_tree, same_split, shuffle_listings, touch

SMALL = Profile("pareto", alpha=1.54, max_count=4, min_count=1)


def build(root, out, **options):
    options.setdefault("profile", SMALL)
    options.setdefault("val_per_class", 1)
    return DATASETS.get("places")().make_splits(out, seed=0, overwrite=False, progress=False, root=root, **options)


def test_places_lt_label_order_is_the_released_one():
    names = places_lt_classes()
    assert len(names) == 365 and names[0] == "airfield" and names[364] == "zen_garden"
    # Released Places-LT labels vs categories_places365.txt indices (research/datasets.md §0.3).
    assert names[116:119] == ["desert_road", "desert/sand", "desert/vegetation"]
    assert names[141:143] == ["field_road", "field/wild"]
    to_lt = official_to_places_lt()
    assert {off: to_lt[off] for off in (116, 117, 118, 141, 142)} == {116: 117, 117: 118, 118: 116, 141: 142, 142: 141}
    assert all(to_lt[i] == i for i in range(365) if i not in (116, 117, 118, 141, 142))


def test_default_profile_has_the_released_shape():
    counts = DEFAULT_PROFILE.class_counts(365)
    assert counts == pareto_counts(365, 1.54, 4980, 5) and counts[0] == 4980 and counts[-1] == 5
    released = released_counts("places_lt")
    assert sum(released) == 62_500 and shot_groups(released) == (131, 163, 71) and max(released) == 4980


@pytest.mark.parametrize("layout, train_list", [("data_256", False), ("data_256", True), ("data_256_standard", False),
                                                ("data_256_standard", True), ("easyformat", False)])
def test_layouts(layout, train_list, tmp_path):
    truth = places_tree(tmp_path / "in", layout=layout, train_list=train_list)
    split = build(tmp_path / "in", tmp_path / "out")
    names = places_lt_classes()
    assert split.classes == names and split.prefix == "Places_LT"
    test = split.entries("test")
    assert len(test) == 365
    # Every val image gets its Places-LT label, whatever the file's own index scheme.
    assert {p.rsplit("/", 1)[1]: names[label] for p, label in test} == truth
    train = split.entries("train") + split.entries("val")
    if layout != "easyformat":
        assert all(p.startswith(f"{layout}/{names[label][0]}/{names[label]}/") for p, label in train)
        assert all(p.startswith("val_256/Places365_val_") for p, _ in test)
        desert_road = [p for p, label in train if label == 116]
        assert desert_road and all(p.startswith(f"{layout}/d/desert_road/") for p in desert_road)
        assert split.manifest["source"]["layout"] == "data_256"
    else:
        assert all(p.startswith(f"train/{names[label].replace('/', '-')}/") for p, label in train)
    assert Counter(label for _, label in split.entries("val")) == Counter(range(365))
    assert sorted(split.train_counts, reverse=True) == SMALL.class_counts(365)
    assert split.manifest["source"]["allow_missing"] is False


def test_file_list_and_scan_give_the_same_split(tmp_path):
    places_tree(tmp_path / "a", train_list=True)
    places_tree(tmp_path / "b", train_list=False)
    a, b = build(tmp_path / "a", tmp_path / "out_a"), build(tmp_path / "b", tmp_path / "out_b")
    assert a.fingerprint == b.fingerprint


def test_open_set_is_the_given_folder(tmp_path, capsys):
    places_tree(tmp_path / "in")
    for k in range(3):
        touch(tmp_path / "extra" / "test" / f"{k}_extra_test_{k + 1:08d}.jpg")
    split = build(tmp_path / "in", tmp_path / "out", open_root=tmp_path / "extra")
    assert split.entries("open") == [(f"test/{k}_extra_test_{k + 1:08d}.jpg", -1) for k in range(3)]
    assert "has 3 images; the released Places-LT open set has 6,600" in capsys.readouterr().err


def test_flat_val_needs_its_label_file(tmp_path):
    places_tree(tmp_path / "in")
    (tmp_path / "in" / "places365_val.txt").unlink()
    with pytest.raises(OltrError, match="labels must come from places365_val.txt"):
        build(tmp_path / "in", tmp_path / "out")


def test_bad_label_file_line_is_named(tmp_path):
    places_tree(tmp_path / "in")
    labels = tmp_path / "in" / "places365_val.txt"
    labels.write_text(labels.read_text().replace(" 0\n", " 365\n", 1))
    with pytest.raises(OltrError, match=r"places365_val.txt:\d+: expected 'Places365_val_<8 digits>.jpg <0..364>'"):
        build(tmp_path / "in", tmp_path / "out")


def test_unknown_layout(tmp_path):
    (tmp_path / "in" / "images").mkdir(parents=True)
    with pytest.raises(OltrError, match="unknown Places365 layout"):
        build(tmp_path / "in", tmp_path / "out")


def test_missing_class_folder_is_named(tmp_path):
    places_tree(tmp_path / "in", layout="easyformat")
    for f in (tmp_path / "in" / "train" / "apartment_building-outdoor").iterdir():
        f.unlink()
    (tmp_path / "in" / "train" / "apartment_building-outdoor").rmdir()
    with pytest.raises(OltrError, match="class folder .*train/apartment_building-outdoor is missing"):
        build(tmp_path / "in", tmp_path / "out")


def test_deterministic_whatever_the_listing_order(tmp_path, monkeypatch):
    """Train, val, test and the Places-Extra69 open list do not depend on the order directories are listed in."""
    places_tree(tmp_path / "in", train_per_class=6, val_per_class=2)
    for k in range(12):
        touch(tmp_path / "extra" / f"{k % 3}" / f"{k}_extra_test_{k + 1:08d}.jpg")
    first = build(tmp_path / "in", tmp_path / "a", open_root=tmp_path / "extra")
    assert len(first.entries("open")) == 12
    shuffle_listings(monkeypatch)
    second = build(tmp_path / "in", tmp_path / "b", open_root=tmp_path / "extra")
    same_split(first, second)


def test_incomplete_val_needs_allow_missing_and_the_manifest_says_so(tmp_path, capsys):
    places_tree(tmp_path / "in")
    (tmp_path / "in" / "val_256" / "Places365_val_00000004.jpg").unlink()
    with pytest.raises(OltrError, match="val_256 has 364 of the 365 images labelled in .*places365_val.txt; missing e.g. "
                                        "Places365_val_00000004.jpg; pass --allow-missing"):
        build(tmp_path / "in", tmp_path / "out")
    split = build(tmp_path / "in", tmp_path / "out", allow_missing=True)
    assert split.manifest["files"]["test"]["lines"] == 364 and split.manifest["source"]["allow_missing"] is True
    assert "warning: " in capsys.readouterr().err

"""Importing released lists (``--official``): both dialects, verification, labels kept, missing images, bad lists."""

import hashlib

import pytest

from oltr_bench.errors import OltrError
from oltr_bench.registry import DATASETS
from oltr_bench.splits import official
from oltr_bench.splits.imagenet import wnids
from oltr_bench.splits.places import places_lt_classes, tree_folder, easy_folder
from oltr_bench.splits.profile import released_counts, shot_groups
from tests.splits_trees import touch

# Checksums copied from the table of released lists (research/datasets.md §7) to check the
# shipped file independently.
RELEASED = {
    ("imagenet_lt", "train", "oltr"): "efdbdad4f050237c310b2f354cf95a8b1d7c8d57a63c4ea4bb6bf2bcb012f37f",
    ("imagenet_lt", "val", "oltr"): "9af7ba688acf9532ff5845a8fb14a1e97fdc4c51ac48bc72c08ea9c3f7ff142e",
    ("imagenet_lt", "test", "oltr"): "d1590191cf8a71fada7b1aaedaa2d139a2aea93ff2f1b755319d0bd8dbaa55d5",
    ("imagenet_lt", "open", "oltr"): "20c916a1fe63302c0bd1dda1f282cd4e8719172b485c30e3e9ba45c8278ac987",
    ("places_lt", "train", "oltr"): "09410632a22045212fb3231623261e8426ba8dc1887a2b633afeab78ba9c8868",
    ("places_lt", "val", "oltr"): "09cf0e5abf684f946f60b6bf9c526a5ee85d09f555d2c4b9cfaaf22b19d04974",
    ("places_lt", "test", "oltr"): "3c34622e44f036b17c7926b0b6bbdd3d335fa63077409ebb06da68afa7073cd9",
    ("places_lt", "open", "oltr"): "6e4092987f5b18e817dfd4ac849717e2026ff78615bdba441838d9b07840af59",
    ("places_lt", "train", "decoupling"): "726c4871dcbf07ce2f857703bfe32e9a83ffbf52d704239f6d95c4f4f4c247f7",
    ("places_lt", "val", "decoupling"): "719e3cf3766c09134ea28f56f1036c78def511ac1ed2c2532a6beef78f2439ba",
    ("places_lt", "test", "decoupling"): "44eee8441c8098c59195465abede425721bc35525d75209f9433b161a6eb37bc",
}


def test_shipped_checksums_are_the_released_ones():
    table = official.known_lists()
    shipped = {(ds, split, e["dialect"]): e["sha256"] for ds in ("imagenet_lt", "places_lt")
               for split, entries in table[ds]["files"].items() for e in entries}
    assert shipped == RELEASED


def test_released_fingerprints_follow_the_spec():
    def fp(shas):
        text = "\n".join(f"{s}:{shas[s]}" for s in ("train", "val", "test", "open") if s in shas)
        return hashlib.sha256(text.encode()).hexdigest()

    shas = {s: RELEASED[("places_lt", s, "decoupling")] for s in ("train", "val", "test")}
    got = official.released_fingerprints("places_lt")
    assert got["decoupling paths, no open list"] == fp(shas)
    assert got["decoupling paths"] == fp({**shas, "open": RELEASED[("places_lt", "open", "oltr")]})
    assert set(official.released_fingerprints("imagenet_lt")) == {"oltr paths", "oltr paths, no open list"}


def write_lists(folder, prefix, lists):
    folder.mkdir(parents=True, exist_ok=True)
    for split, lines in lists.items():
        (folder / f"{prefix}_{split}.txt").write_text("".join(f"{p} {label}\n" for p, label in lines))


def imagenet_lists(flat_test=False):
    names = wnids()
    return {
        "train": [(f"train/{w}/{w}_{i}.JPEG", c) for c, w in enumerate(names) for i in range(1 + c % 3)],
        "val": [(f"train/{w}/{w}_9.JPEG", c) for c, w in enumerate(names)],
        "test": [(f"val/{w}/ILSVRC2012_val_{c + 1:08d}.JPEG" if not flat_test else f"val/ILSVRC2012_val_{c + 1:08d}.JPEG", c)
                 for c, w in enumerate(names)],
        "open": [(f"ILSVRC2010_val_{i:08d}.JPEG", -1) for i in (7, 8, 9)],
    }


def places_lists(dialect, counts=None):
    names = places_lt_classes()

    def train_path(name, i):
        return f"data_256/{tree_folder(name)}/{i:08d}.jpg" if dialect == "oltr" else f"train/{easy_folder(name)}/{i:08d}.jpg"

    return {
        "train": [(train_path(n, i + 1), c) for c, n in enumerate(names) for i in range(counts[c] if counts else 2)],
        "val": [(train_path(n, 9999), c) for c, n in enumerate(names)],
        "test": [(f"val_256/Places365_val_{c + 1:08d}.jpg" if dialect == "oltr"
                  else f"val/{easy_folder(n)}/Places365_val_{c + 1:08d}.jpg", c) for c, n in enumerate(names)],
        "open": [("0_extra_test_00000001.jpg", -1), ("1_extra_test_00000002.jpg", -1)],
    }


def make_images(root, lists, open_root):
    for split, lines in lists.items():
        for p, _ in lines:
            touch((open_root if split == "open" else root) / p)


def run(dataset, tmp_path, **options):
    return DATASETS.get(dataset)().make_splits(tmp_path / "out", seed=0, overwrite=False, progress=False, **options)


def test_imagenet_import_keeps_the_lists_byte_for_byte(tmp_path, capsys):
    lists = imagenet_lists()
    write_lists(tmp_path / "lists", "ImageNet_LT", lists)
    make_images(tmp_path / "ilsvrc", lists, tmp_path / "lists" / "ImageNet_LT_open")
    split = run("imagenet", tmp_path, root=tmp_path / "ilsvrc", official=tmp_path / "lists")
    for s in ("train", "val", "test", "open"):
        assert (split.path / f"ImageNet_LT_{s}.txt").read_bytes() == (tmp_path / "lists" / f"ImageNet_LT_{s}.txt").read_bytes()
    assert split.classes == wnids()
    # The open images default to the <Prefix>_open/ folder shipped next to the lists.
    assert split.manifest["roots"]["open"] == str((tmp_path / "lists" / "ImageNet_LT_open").resolve())
    files = split.manifest["source"]["files"]
    assert files["train"]["status"] == "differs" and "1,999 lines, the release has 115,846" in " ".join(files["train"]["details"])
    assert "1,000 classes have other line counts than the release (e.g. label 0: 1, released 50)" in " ".join(files["train"]["details"])
    assert files["val"]["status"] == "differs" and files["val"]["dialect"] == "oltr"
    err = capsys.readouterr().err
    assert "ImageNet_LT_train.txt: DIFFERS from the released list (oltr paths)" in err


def test_matching_checksums_are_reported(tmp_path, monkeypatch, capsys):
    lists = imagenet_lists()
    write_lists(tmp_path / "lists", "ImageNet_LT", lists)
    (tmp_path / "lists" / "ImageNet_LT_val.txt").write_bytes(
        (tmp_path / "lists" / "ImageNet_LT_val.txt").read_bytes().replace(b"\n", b"\r\n"))
    make_images(tmp_path / "ilsvrc", lists, tmp_path / "open")
    text = "".join(f"{p} {label}\n" for p, label in lists["train"]).encode()
    val_text = "".join(f"{p} {label}\n" for p, label in lists["val"]).encode()
    table = official.known_lists()
    table["imagenet_lt"]["files"]["train"] = [{"dialect": "oltr", "lines": 1999, "sha256": hashlib.sha256(text).hexdigest()}]
    table["imagenet_lt"]["files"]["val"] = [{"dialect": "oltr", "lines": 1000, "sha256": hashlib.sha256(val_text).hexdigest()}]
    table["imagenet_lt"]["files"]["test"] = [{"dialect": "oltr", "lines": 50000, "sha256": "0" * 64}]
    monkeypatch.setattr(official, "known_lists", lambda: table)
    split = run("imagenet", tmp_path, root=tmp_path / "ilsvrc", official=tmp_path / "lists", open_root=tmp_path / "open")
    files = split.manifest["source"]["files"]
    assert files["train"]["status"] == "matched" and files["train"]["details"] == []
    assert files["val"]["status"] == "matched" and "normalising line endings" in files["val"]["details"][0]
    assert (split.path / "ImageNet_LT_val.txt").read_bytes() == val_text
    err = capsys.readouterr().err
    assert "ImageNet_LT_train.txt: matches the released list (oltr paths)" in err
    assert "ImageNet_LT_open.txt: DIFFERS" in err and "3 lines, the release has 18,000" in err


def test_flat_test_dialect_is_unknown_not_wrong(tmp_path):
    lists = imagenet_lists(flat_test=True)
    write_lists(tmp_path / "lists", "ImageNet_LT", lists)
    make_images(tmp_path / "ilsvrc", lists, tmp_path / "lists" / "ImageNet_LT_open")
    split = run("imagenet", tmp_path, root=tmp_path / "ilsvrc", official=tmp_path / "lists")
    test = split.manifest["source"]["files"]["test"]
    assert test["status"] == "unknown" and test["dialect"] == "flat"
    assert "released checksums are known for: oltr" in test["details"]


@pytest.mark.parametrize("dialect", ["oltr", "decoupling"])
def test_places_import_reproduces_the_released_counts(dialect, tmp_path, capsys):
    """Released Places-LT: 62,500 train images; 131 / 163 / 71 classes with >100 / 20-100 / <20."""
    lists = places_lists(dialect, counts=released_counts("places_lt"))
    write_lists(tmp_path / "lists", "Places_LT", lists)
    (tmp_path / "places").mkdir()
    split = run("places", tmp_path, root=tmp_path / "places", official=tmp_path / "lists", allow_missing=True)
    assert split.manifest["files"]["train"]["lines"] == 62_500
    assert split.train_counts == released_counts("places_lt")
    assert shot_groups(split.train_counts) == (131, 163, 71)
    # Labels kept exactly, class names recorded per label (the permuted ones included).
    assert split.classes[116:119] == ["desert_road", "desert/sand", "desert/vegetation"]
    assert split.classes[141:143] == ["field_road", "field/wild"]
    assert split.manifest["source"]["missing_images"] == {"train": 62_500, "val": 365, "test": 365, "open": 2}
    assert split.manifest["source"]["files"]["train"]["details"] == [
        "same lines per class as the release, but other paths or order"]
    err = capsys.readouterr().err
    assert "warning: train: 62,500 missing of 62,500 images" in err


def test_places_lists_with_official_indices_are_rejected(tmp_path):
    """A list labelled with categories_places365.txt indices is not Places-LT: 116 is desert_road there."""
    lists = places_lists("oltr")
    lists["train"] = [(p, {116: 118, 117: 116, 118: 117}.get(label, label)) for p, label in lists["train"]]
    write_lists(tmp_path / "lists", "Places_LT", lists)
    with pytest.raises(OltrError, match=r"Places_LT_train.txt:\d+: data_256/d/desert_road/00000001.jpg is a 'desert_road' image but label 118 is 'desert/vegetation'"):
        run("places", tmp_path, root=tmp_path, official=tmp_path / "lists", allow_missing=True)


def test_missing_images_stop_the_import_with_the_first_few_named(tmp_path):
    lists = places_lists("oltr")
    write_lists(tmp_path / "lists", "Places_LT", lists)
    make_images(tmp_path / "places", lists, tmp_path / "extra")
    (tmp_path / "places" / "val_256" / "Places365_val_00000003.jpg").unlink()
    with pytest.raises(OltrError, match=r"test: 1 missing of 365 images under .*places, e.g. val_256/Places365_val_00000003.jpg; or pass --allow-missing"):
        run("places", tmp_path, root=tmp_path / "places", official=tmp_path / "lists", open_root=tmp_path / "extra")
    assert not (tmp_path / "out" / "places_lt").exists()


def test_layout_hint_for_flat_imagenet_val(tmp_path):
    lists = imagenet_lists()
    write_lists(tmp_path / "lists", "ImageNet_LT", lists)
    make_images(tmp_path / "ilsvrc", {"train": lists["train"], "val": lists["val"]}, tmp_path)
    for p, _ in lists["test"]:
        touch(tmp_path / "ilsvrc" / "val" / p.rsplit("/", 1)[1])
    with pytest.raises(OltrError, match="val/ is flat but the released test list expects val/<wnid>/ folders"):
        run("imagenet", tmp_path, root=tmp_path / "ilsvrc", official=tmp_path / "lists")


def test_layout_hint_for_the_other_places_dialect(tmp_path):
    lists = places_lists("oltr")
    write_lists(tmp_path / "lists", "Places_LT", lists)
    make_images(tmp_path / "places", places_lists("decoupling"), tmp_path / "extra")
    with pytest.raises(OltrError, match="looks like the easyformat tree"):
        run("places", tmp_path, root=tmp_path / "places", official=tmp_path / "lists", open_root=tmp_path / "extra")


@pytest.mark.parametrize(
    "edit, message",
    [
        (lambda l: l["val"].append(("train/n01440764/x.JPEG", 1000)), r"ImageNet_LT_val.txt:1001: label 1000 outside 0..999"),
        (lambda l: l["val"].append(("../train/x.JPEG", 0)), r"ImageNet_LT_val.txt:1001: path '../train/x.JPEG' escapes the split root"),
        (lambda l: l["val"].append(("/data/train/x.JPEG", 0)), "is absolute"),
        (lambda l: l["val"].append(l["val"][0]), "ImageNet_LT_val.txt: 1 paths occur more than once, e.g. train/n01440764/n01440764_9.JPEG"),
        (lambda l: l["val"].pop(), r"ImageNet_LT_val.txt has labels for 999 of the 1000 ImageNet_LT classes \(no line with label 999\)"),
        (lambda l: l["test"].append(("val_256/x.jpg", 3)), "path 'val_256/x.jpg' is in no known ImageNet_LT path dialect"),
        (lambda l: l["test"].append(("val/ILSVRC2012_val_00049999.JPEG", 3)), "ImageNet_LT_test.txt mixes path dialects"),
        (lambda l: l["train"].__setitem__(0, ("train/n01443537/a.JPEG", 0)), "is a 'n01443537' image but label 0 is 'n01440764'"),
        (lambda l: l.pop("val"), "--official .* lacks ImageNet_LT_val.txt; found: ImageNet_LT_open.txt, ImageNet_LT_test.txt, ImageNet_LT_train.txt"),
    ],
)
def test_bad_lists_are_rejected_with_the_line(edit, message, tmp_path):
    lists = imagenet_lists()
    edit(lists)
    write_lists(tmp_path / "lists", "ImageNet_LT", lists)
    with pytest.raises(OltrError, match=message):
        run("imagenet", tmp_path, root=tmp_path, official=tmp_path / "lists", allow_missing=True)
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())


def test_official_excludes_generator_options(tmp_path):
    with pytest.raises(OltrError, match="--official imports the released lists"):
        run("imagenet", tmp_path, root=tmp_path, official=tmp_path, val_per_class=3)


@pytest.mark.parametrize("dataset", ["imagenet_lt", "places_lt"])
def test_shipped_canonical_fingerprint_is_the_released_oltr_import(dataset):
    """`splits/<dataset>_canonical.json` (read by the leaderboard) = fingerprint of the four released OLTR lists."""
    import json
    from importlib import resources

    shipped = json.loads(resources.files("oltr_bench.splits_data").joinpath(f"{dataset}_canonical.json").read_text())
    text = "\n".join(f"{s}:{RELEASED[(dataset, s, 'oltr')]}" for s in ("train", "val", "test", "open"))
    assert shipped["dataset"] == dataset
    assert shipped["fingerprint"] == hashlib.sha256(text.encode()).hexdigest() == official.released_fingerprints(dataset)["oltr paths"]
    assert shipped["other_imports"] == {k: v for k, v in official.released_fingerprints(dataset).items() if k != "oltr paths"}


@pytest.mark.parametrize("dataset, prefix, hint", [
    ("imagenet", "ImageNet_LT", "the open images are ILSVRC2010_val_*.JPEG files: pass --open-root with the folder that holds them"),
    ("places", "Places_LT", "pass --open-root with the folder of the open-set images"),
])
def test_missing_open_images_get_one_open_root_hint(tmp_path, dataset, prefix, hint):
    lists = imagenet_lists() if dataset == "imagenet" else places_lists("oltr")
    write_lists(tmp_path / "lists", prefix, lists)
    make_images(tmp_path / "data", {k: v for k, v in lists.items() if k != "open"}, tmp_path)
    with pytest.raises(OltrError) as err:
        run(dataset, tmp_path, root=tmp_path / "data", official=tmp_path / "lists")
    message = str(err.value)
    assert message.count("--open-root") == 1 and f"({hint}); or pass --allow-missing to import the lists anyway" in message

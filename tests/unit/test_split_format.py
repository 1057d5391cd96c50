"""The split directory contract (SPEC.md §1): lists, manifest, fingerprint, validation."""

import hashlib
import json

import pytest

from oltr_bench.errors import OltrError
from oltr_bench.splits.format import fingerprint, format_list, load_split_dir, parse_list, prefix_for, write_split_dir

LISTS = {
    "train": [("a/1.png", 0), ("a/2.png", 0), ("b/1.png", 1)],
    "val": [("a/3.png", 0), ("b/2.png", 1)],
    "test": [("a/4.png", 0), ("b/3.png", 1)],
    "open": [("c/1.png", -1)],
}


def write(tmp_path, **kwargs):
    args = dict(dataset="toy", classes=["a", "b"], lists=LISTS, roots={s: "/data" for s in LISTS}, source={"kind": "test"})
    args.update(kwargs)
    return write_split_dir(tmp_path / "toy", **args)


def test_round_trip_and_fingerprint(tmp_path):
    split = write(tmp_path)
    assert sorted(p.name for p in split.path.iterdir()) == [
        "Toy_LT_open.txt", "Toy_LT_test.txt", "Toy_LT_train.txt", "Toy_LT_val.txt", "manifest.json"
    ]
    train_text = (split.path / "Toy_LT_train.txt").read_bytes()
    assert train_text == b"a/1.png 0\na/2.png 0\nb/1.png 1\n"
    shas = {s: hashlib.sha256((split.path / f"Toy_LT_{s}.txt").read_bytes()).hexdigest() for s in LISTS}
    expected = hashlib.sha256(
        "\n".join(f"{s}:{shas[s]}" for s in ("train", "val", "test", "open")).encode()
    ).hexdigest()
    loaded = load_split_dir(split.path)
    assert loaded.fingerprint == expected == fingerprint(shas)
    assert loaded.train_counts == [2, 1]
    assert loaded.entries("open") == LISTS["open"]
    manifest = json.loads((split.path / "manifest.json").read_text())
    assert manifest["format"] == "oltr-bench-splits/1" and manifest["files"]["train"]["lines"] == 3


def test_prefixes():
    assert prefix_for("imagenet_lt") == "ImageNet_LT"
    assert prefix_for("places_lt") == "Places_LT"
    assert prefix_for("flowers") == "Flowers_LT"
    assert prefix_for("my_birds_lt") == "My_Birds_LT"


def test_modified_list_is_detected(tmp_path):
    split = write(tmp_path)
    (split.path / "Toy_LT_val.txt").write_text("a/3.png 0\n")
    with pytest.raises(OltrError, match="modified after the split was written"):
        load_split_dir(split.path)


@pytest.mark.parametrize(
    "line, message",
    [
        ("/abs/x.png 0", "is absolute"),
        ("a/../../x.png 0", "escapes the split root"),
        ("a/x.png", "expected '<relative path> <integer label>'"),
        ("a/x.png zero", "is not an integer"),
        ("a/x.png 5", "outside 0..1"),
    ],
)
def test_bad_list_lines(line, message):
    with pytest.raises(OltrError, match=message):
        parse_list(line + "\n", "L.txt", num_classes=2)


def test_open_list_needs_minus_one():
    with pytest.raises(OltrError, match="label -1"):
        parse_list("c/1.png 0\n", "open.txt", open_list=True)


def test_overlap_between_splits_is_rejected(tmp_path):
    lists = dict(LISTS, val=[("a/1.png", 0)])
    with pytest.raises(OltrError, match="appears in both the train and the val list"):
        write(tmp_path, lists=lists)


def test_existing_directory_is_not_replaced_without_overwrite(tmp_path):
    write(tmp_path)
    with pytest.raises(OltrError, match="already exists"):
        write(tmp_path)
    write(tmp_path, overwrite=True)


def test_failure_leaves_nothing_behind(tmp_path):
    def boom(tmp):
        (tmp / "half.bin").write_bytes(b"x")
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        write(tmp_path, populate=boom)
    assert list(tmp_path.iterdir()) == []


def test_missing_manifest_names_the_fix(tmp_path):
    with pytest.raises(OltrError, match="make-splits"):
        load_split_dir(tmp_path)


def test_format_list_matches_released_style():
    assert format_list([("train/n01440764/n01440764_190.JPEG", 0)]) == "train/n01440764/n01440764_190.JPEG 0\n"


def test_test_and_open_ids_are_unique_even_with_other_roots(tmp_path):
    lists = dict(LISTS, open=[("a/4.png", -1)])
    roots = {"train": "/data", "val": "/data", "test": "/data", "open": "/other"}
    with pytest.raises(OltrError, match="'a/4.png' appears in both the test and the open list"):
        write(tmp_path, lists=lists, roots=roots)
    with pytest.raises(OltrError, match="'a/1.png' appears twice in the train list"):
        write(tmp_path, lists=dict(LISTS, train=[("a/1.png", 0), ("a/1.png", 0), ("b/1.png", 1)]))


def edit_manifest(split, **changes):
    path = split.path / "manifest.json"
    manifest = json.loads(path.read_text())
    manifest.update(changes)
    path.write_text(json.dumps(manifest))


@pytest.mark.parametrize(
    "changes, message",
    [
        # Shot groups come from train_counts: inflating them must not pass under the list's fingerprint.
        ({"train_counts": [5000, 5000]}, r"manifest.json: train_counts does not match the train list \(class 0 has 5000 there but 2 lines"),
        ({"train_counts": [2, 1, 0]}, r"manifest.json: train_counts does not match the train list \(it has 3 entries; expected 2\)"),
        ({"classes": ["a", "b", "c"]}, r"manifest.json: classes has 3 names; expected one name per class \(num_classes = 2\)"),
        ({"num_classes": 1, "classes": ["a"], "train_counts": [2]},
         r"Toy_LT_train.txt:3: label 1 outside 0..0 \(num_classes is 1 in .*manifest.json\)"),
    ],
)
def test_verify_checks_the_manifest_keys_derived_from_the_lists(tmp_path, changes, message):
    split = write(tmp_path)
    edit_manifest(split, **changes)
    with pytest.raises(OltrError, match=message):
        load_split_dir(split.path)
    assert load_split_dir(split.path, verify=False).manifest["num_classes"] == changes.get("num_classes", 2)


@pytest.mark.parametrize("changes, message", [
    ({"num_classes": "2"}, r'num_classes: found "2", expected an integer in 1\.\.10,000,000'),
    ({"files": {"train": {"name": "../../etc/passwd", "lines": 3, "sha256": "0" * 64}}},
     r'files.train.name: found "../../etc/passwd", expected a file name inside the split directory'),
    ({"source": ["generated"]}, r'source: found \["generated"\], expected an object'),
])
def test_manifest_key_kinds_are_checked_even_without_verify(tmp_path, changes, message):
    split = write(tmp_path)
    edit_manifest(split, **changes)
    with pytest.raises(OltrError, match=message):
        load_split_dir(split.path, verify=False)


def test_verify_checks_line_counts_and_keeps_the_parsed_lists(tmp_path):
    split = write(tmp_path)
    loaded = load_split_dir(split.path)
    assert loaded._cache == LISTS  # parsed once while verifying
    files = json.loads((split.path / "manifest.json").read_text())["files"]
    files["val"]["lines"] = 7
    edit_manifest(split, files=files)
    with pytest.raises(OltrError, match=r"manifest.json: files.val.lines is 7; the list has 2 lines"):
        load_split_dir(split.path)


@pytest.mark.parametrize("umask", [0o022, 0o027])
def test_split_directory_and_files_follow_the_umask(tmp_path, umask):
    """Like mkdir and open: a split directory is not private to its writer (mkdtemp would make it 0700)."""
    import os
    import stat

    old = os.umask(umask)
    try:
        split = write(tmp_path)
    finally:
        os.umask(old)
    assert stat.S_IMODE(split.path.stat().st_mode) == 0o777 & ~umask
    assert stat.S_IMODE((split.path / "manifest.json").stat().st_mode) == 0o666 & ~umask
    assert stat.S_IMODE((split.path / "Toy_LT_train.txt").stat().st_mode) == 0o666 & ~umask


@pytest.mark.parametrize(
    "edit, message",
    [
        ("test", r"manifest.json: 'a/4.png' appears twice in the test list"),  # would be scored twice
        ("open", r"manifest.json: 'a/4.png' appears in both the test and the open list"),  # known and open at once
    ],
)
def test_verify_refuses_a_hand_made_split_that_repeats_an_image(tmp_path, edit, message):
    """A split written elsewhere (lists and a manifest with matching sha256s) gets the writer's uniqueness rule."""
    split = write(tmp_path)
    name = split.manifest["files"][edit]["name"]
    line = "a/4.png 0\n" if edit == "test" else "a/4.png -1\n"
    data = (split.path / name).read_bytes() + line.encode()
    (split.path / name).write_bytes(data)
    files = split.manifest["files"]
    files[edit].update(lines=files[edit]["lines"] + 1, sha256=hashlib.sha256(data).hexdigest())
    edit_manifest(split, files=files, fingerprint=fingerprint({s: f["sha256"] for s, f in files.items()}))
    with pytest.raises(OltrError, match=message):
        load_split_dir(split.path)

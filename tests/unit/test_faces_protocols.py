"""The face protocols' lists (SPEC.md §6): heldout from a split (deterministic from the split and a
seed) and megaface from a tiny fake insightface pack in the real layout (never downloaded)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from oltr_bench.errors import OltrError
from oltr_bench.formats import megaface
from oltr_bench.splits.faces import heldout, megaface_lists
from oltr_bench.splits.format import load_split_dir, write_split_dir

COUNTS = [150, 50, 5, 1]


@pytest.fixture(scope="module")
def split(tmp_path_factory):
    lists = {
        "train": [(f"c{c}/t{i}.png", c) for c in range(4) for i in range(COUNTS[c])],
        "val": [(f"c{c}/v0.png", c) for c in range(4)],
        "test": [(f"c{c}/s{i}.png", c) for c in range(4) for i in range(3)],
        "open": [(f"o{k}/{i}.png", -1) for k in range(6) for i in range(4)],
    }
    out = tmp_path_factory.mktemp("split") / "tiny"
    write_split_dir(out, dataset="tiny", classes=["a", "b", "c", "d"], lists=lists, roots={k: "images" for k in lists},
                    source={"kind": "test", "seed": 3})
    return load_split_dir(out)


def test_heldout_lists(split):
    lists = heldout(split)
    assert lists.params["seed"] == 3 and lists.params["split_fingerprint"] == split.fingerprint
    known = [i for i in lists.probe_identity if i.startswith("known:")]
    assert len(known) == 12 and lists.probe_train_count[:12] == [150] * 3 + [50] * 3 + [5] * 3 + [1] * 3
    zero = {i for i, c in zip(lists.probe_identity, lists.probe_train_count) if c == 0}
    assert len(zero) == 3 and len(set(lists.distractor_identity)) == 3 and not zero & set(lists.distractor_identity)
    assert len(lists.distractors) == 12 and len(lists.probes) == 24
    assert heldout(split).probes == lists.probes  # deterministic
    others = [heldout(split, seed=s).distractors for s in range(8)]
    assert any(o != lists.distractors for o in others)  # the seed chooses the zero-shot identities


def make_pack(root, noise=True):
    lists = root / "megaface_testpack"
    (lists / "facescrub_images").mkdir(parents=True)
    probes = [f"{name}/{name}_{i}.png" for name in ("Ann_A", "Bob_B") for i in range(3)]
    distractors = [f"{k}/{k}_{i}.jpg" for k in ("001", "002") for i in range(5)]
    for p in probes:
        (lists / "facescrub_images" / p).parent.mkdir(parents=True, exist_ok=True)
        (lists / "facescrub_images" / p).write_bytes(b"x")
    for d in distractors:
        (lists / "megaface_images" / d).parent.mkdir(parents=True, exist_ok=True)
        (lists / "megaface_images" / d).write_bytes(b"x")
    (lists / "facescrub_features_list.json").write_text(json.dumps({"path": probes, "id": [p.split("/")[0] for p in probes]}))
    (lists / "megaface_features_list.json_10_1").write_text(json.dumps({"path": distractors}))
    (lists / "megaface_features_list.json_4_1").write_text(json.dumps({"path": distractors[:4]}))
    if noise:
        (lists / "facescrub_noises.txt").write_text("#comment\nAnn_A_1.png\n")
        (lists / "megaface_noises.txt").write_text("001_0.jpg\n002_4.jpg\n")
    return root


def test_megaface_pack_detection_and_noise(tmp_path):
    root = make_pack(tmp_path)
    pack = megaface.detect_pack(root)
    assert sorted(pack.distractor_lists) == [4, 10] and set(pack.noise) == {"probe", "distractor"}
    lists = megaface_lists(root)
    assert len(lists.probes) == 6 and len(lists.distractors) == 10 and lists.probe_identity[0] == "Ann_A"
    assert lists.probe_train_count is None and lists.params["noise_lists"] is False
    cleaned = megaface_lists(root, size=10, noise=True)
    assert len(cleaned.probes) == 5 and len(cleaned.distractors) == 8
    assert cleaned.params["noise_removed"] == {"probe": 1, "distractor": 2}
    assert len(megaface_lists(root, size=4).distractors) == 4
    counts = tmp_path / "counts.txt"
    counts.write_text("Ann_A 120\nBob_B,0\n")
    assert megaface_lists(root, probe_counts=counts).probe_train_count == [120] * 3 + [0] * 3
    counts.write_text("Ann_A 120\n")
    with pytest.raises(OltrError, match="Bob_B"):
        megaface_lists(root, probe_counts=counts)
    with pytest.raises(OltrError, match="_7_"):
        megaface_lists(root, size=7)


def test_missing_pack_parts_are_named(tmp_path):
    with pytest.raises(OltrError, match="never downloaded"):
        megaface.detect_pack(tmp_path / "nothing")
    with pytest.raises(OltrError, match="facescrub_features_list.json"):
        megaface.detect_pack(tmp_path)
    root = make_pack(tmp_path / "p", noise=False)
    with pytest.raises(OltrError, match="facescrub_noises.txt"):
        megaface_lists(root, noise=True)
    (root / "megaface_testpack" / "megaface_images" / "001" / "001_0.jpg").unlink()
    with pytest.raises(OltrError, match="001_0.jpg"):
        megaface_lists(root)

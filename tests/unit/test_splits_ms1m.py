"""MS1M-LT from small RecordIO files (with and without the header record, multi-part records)."""

import numpy as np
import pytest

from oltr_bench.formats.recordio import IRHeader, RecordIO, RecordIOWriter, pack
from oltr_bench.errors import OltrError
from oltr_bench.registry import DATASETS
from oltr_bench.splits.ms1m import DEFAULT_TRAIN_FRACTION, sample_ms1m, solve_z
from oltr_bench.splits.format import load_split_dir

MAGIC = b"\x0a\x23\xd7\xce"
SIZES = [60, 45, 30, 25, 20, 16, 12, 10, 9, 8, 7, 6, 5, 4, 3, 2]  # images of identities 0..15


def face(key):
    # JPEG-like payloads; every third one contains the magic word at an aligned offset (multi-part record)
    return b"\xff\xd8" + (b"\0\0" + MAGIC if key % 3 == 0 else b"") + key.to_bytes(4, "little") + b"\xff\xd9"


def write_ms1m(folder, header0=True, sizes=SIZES):
    folder.mkdir(parents=True)
    keys, key = {}, 1
    for ident, n in enumerate(sizes):
        keys[ident] = list(range(key, key + n))
        key += n
    id_start = key
    with RecordIOWriter(folder / "train.rec", folder / "train.idx") as w:
        if header0:
            w.write(0, pack(IRHeader(2, (float(id_start), float(id_start + len(sizes))), 0, 1), b""))
        for ident, ks in keys.items():
            for k in ks:
                w.write(k, pack(IRHeader(0, float(ident), k, 0), face(k)))
        if header0:
            for ident, ks in keys.items():
                w.write(id_start + ident, pack(IRHeader(2, (float(ks[0]), float(ks[-1] + 1)), id_start + ident, 0), b""))
    (folder / "property").write_text(f"{len(sizes)},112,112\n")
    return keys


def build(folder, out, **options):
    return DATASETS.get("ms1m")().make_splits(out, seed=0, overwrite=False, progress=False, root=folder, **options)


def test_split_rules(tmp_path):
    keys = write_ms1m(tmp_path / "emore")
    split = build(tmp_path / "emore", tmp_path / "out", train_fraction=0.4, val_per_class=1, test_per_class=2, open_per_class=2)
    assert split.path.name == "ms1m_lt" and split.prefix == "MS1M_LT"
    key_to_ident = {k: i for i, ks in keys.items() for k in ks}
    known = [int(c) for c in split.classes]
    assert known == sorted(known)
    lists = {s: split.entries(s) for s in ("train", "val", "test", "open")}
    for s in ("train", "val", "test"):
        assert all(p.startswith("rec:") and key_to_ident[int(p[4:])] == known[label] for p, label in lists[s])
    assert [sum(1 for _, l in lists["val"] if l == c) for c in range(len(known))] == [1] * len(known)
    assert [sum(1 for _, l in lists["test"] if l == c) for c in range(len(known))] == [2] * len(known)
    assert all(split.train_counts)
    # Open identities were never trained on; identities too small for val + test + train are open.
    open_idents = {key_to_ident[int(p[4:])] for p, _ in lists["open"]}
    assert not open_idents & set(known) and open_idents | set(known) == set(range(len(SIZES)))
    assert {14, 15} <= open_idents  # 3 and 2 images: nothing left after 1 val + 2 test
    paths = [p for entries in lists.values() for p, _ in entries]
    assert len(paths) == len(set(paths))
    source = split.manifest["source"]
    assert source["records"]["header0"] == [sum(SIZES) + 1, sum(SIZES) + 1 + len(SIZES)]
    assert source["identities"] == 16 and source["known_identities"] == len(known)
    # Z solves the expected-size equation of the rule.
    pools = np.maximum(np.array(SIZES) - 3, 0)
    expected = (pools * np.minimum(1, np.array(SIZES) / source["Z"])).sum()
    assert abs(expected - 0.4 * sum(SIZES)) < 1e-6
    assert split.manifest["roots"]["train"] == str((tmp_path / "emore").resolve())
    # The records the lists name are the images (multi-part records included).
    rec = RecordIO(tmp_path / "emore" / "train.rec", tmp_path / "emore" / "train.idx")
    for p, _ in lists["train"][:10]:
        assert rec.read(int(p[4:]))[1] == face(int(p[4:]))


def test_header_record_and_label_scan_agree(tmp_path):
    write_ms1m(tmp_path / "a", header0=True)
    write_ms1m(tmp_path / "b", header0=False)
    a = build(tmp_path / "a", tmp_path / "out_a", train_fraction=0.4)
    b = build(tmp_path / "b", tmp_path / "out_b", train_fraction=0.4)
    assert a.fingerprint == b.fingerprint
    assert b.manifest["source"]["records"]["header0"] is None
    again = build(tmp_path / "a", tmp_path / "out_c", train_fraction=0.4)
    assert again.fingerprint == a.fingerprint
    assert load_split_dir(a.path).fingerprint == a.fingerprint


def test_keep_probability_is_proportional_to_identity_size():
    sizes = [20] * 400 + [80] * 400
    identities = {}
    start = 0
    for c, n in enumerate(sizes):
        identities[c] = range(start, start + n)
        start += n
    lists, known, figures = sample_ms1m(identities, train_fraction=0.1, val_per_class=1, test_per_class=1, open_per_class=1, seed=3)
    z = figures["Z"]
    kept = np.bincount([label for _, label in lists["train"]], minlength=len(known))
    by_size = {20: [], 80: []}
    for label, ident in enumerate(known):
        by_size[sizes[ident]].append(kept[label])
    small = (sum(by_size[20]) / (400 * 18))
    large = (sum(by_size[80]) / (400 * 78))
    assert abs(small - 20 / z) < 0.01 and abs(large - 80 / z) < 0.02
    assert abs(large / small - 4) < 0.4


def test_default_fraction_is_the_papers():
    assert DEFAULT_TRAIN_FRACTION == 887_500 / 5_822_653


def test_solve_z_saturates_large_identities():
    sizes = np.array([100.0, 10.0])
    z = solve_z(sizes, sizes, 105.0)
    assert abs(min(1, 100 / z) * 100 + 10 / z * 10 - 105) < 1e-9 and z < 100
    with pytest.raises(OltrError, match="asks for 200 training images but only 110 are left"):
        solve_z(sizes, sizes, 200.0)


def test_errors(tmp_path):
    with pytest.raises(OltrError, match="expected train.rec and train.idx"):
        build(tmp_path, tmp_path / "out")
    write_ms1m(tmp_path / "emore")
    with pytest.raises(OltrError, match="--train-fraction 1.5"):
        build(tmp_path / "emore", tmp_path / "out", train_fraction=1.5)
    idx = tmp_path / "emore" / "train.idx"
    idx.write_text("".join(f"{k}\t{int(o) + 4}\n" for k, o in (line.split() for line in idx.read_text().splitlines())))
    with pytest.raises(OltrError, match="no RecordIO magic"):
        build(tmp_path / "emore", tmp_path / "out")
    assert not (tmp_path / "out").exists()

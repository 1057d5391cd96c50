"""The pure-Python RecordIO reader/writer against hand-built bytes of the dmlc format."""

import pickle
import struct

import pytest

from oltr_bench.formats.recordio import (
    IRHeader,
    RecordIO,
    RecordIOWriter,
    open_split_records,
    pack,
    parse_record_path,
    unpack,
)
from oltr_bench.errors import OltrError

MAGIC = b"\x0a\x23\xd7\xce"


def lrec(cflag, length):
    return struct.pack("<I", (cflag << 29) | length)


def write(tmp_path, records):
    with RecordIOWriter(tmp_path / "train.rec", tmp_path / "train.idx") as w:
        for key, data in records.items():
            w.write(key, data)
    return RecordIO(tmp_path / "train.rec", tmp_path / "train.idx")


def test_single_and_split_records_byte_by_byte(tmp_path):
    write(tmp_path, {0: b"abc", 1: b"1234" + MAGIC + b"5678" + MAGIC + b"9", 2: MAGIC + b"xy"})
    expected = (
        MAGIC + lrec(0, 3) + b"abc\0"
        # the magic word at aligned offsets 4 and 12 splits the record: first, middle, last part
        + MAGIC + lrec(1, 4) + b"1234" + MAGIC + lrec(2, 4) + b"5678" + MAGIC + lrec(3, 1) + b"9\0\0\0"
        + MAGIC + lrec(1, 0) + MAGIC + lrec(3, 2) + b"xy\0\0"
    )
    assert (tmp_path / "train.rec").read_bytes() == expected
    assert (tmp_path / "train.idx").read_text() == "0\t0\n1\t12\n2\t48\n"


@pytest.mark.parametrize("payload", [
    b"", b"a", MAGIC, b"12" + MAGIC + b"34", b"1234" + MAGIC, MAGIC * 3, bytes(range(256)) * 3 + MAGIC + b"z" * 5,
])
def test_round_trip(tmp_path, payload):
    rec = write(tmp_path, {7: b"head", 9: payload, 11: b"tail"})
    assert rec.keys() == [7, 9, 11]
    assert rec.read_raw(9) == payload and rec.read_raw(7) == b"head" and rec.read_raw(11) == b"tail"
    # Without the .idx: one sequential pass, keys 0, 1, 2.
    seq = RecordIO(tmp_path / "train.rec")
    assert [seq.read_raw(k) for k in seq.keys()] == [b"head", payload, b"tail"]


def test_image_record_headers(tmp_path):
    jpeg = b"\xff\xd8" + MAGIC + b"\xff\xd9"
    rec = write(tmp_path, {
        0: pack(IRHeader(2, (3.0, 5.0), 0, 1), b""),
        1: pack(IRHeader(0, 42.0, 1, 0), jpeg),
        2: pack(IRHeader(0, 0.0, 2, 0), b"\0\0" + MAGIC + jpeg),
    })
    header, payload = rec.read(0)
    assert header == IRHeader(2, (3.0, 5.0), 0, 1) and payload == b""
    assert rec.read(1) == (IRHeader(0, 42.0, 1, 0), jpeg)
    for key in (0, 1, 2):
        assert rec.header(key) == rec.read(key)[0]
    raw = struct.pack("<IfQQ", 0, 7.0, 3, 0) + b"data"
    assert unpack(raw) == (IRHeader(0, 7.0, 3, 0), b"data")


def test_old_dmlc_magic_is_read(tmp_path):
    old = struct.pack("<II", 0x3ED7230A, (0 << 30) | 5) + b"hello\0\0\0"
    (tmp_path / "old.rec").write_bytes(old)
    (tmp_path / "old.idx").write_text("0\t0\n")
    assert RecordIO(tmp_path / "old.rec", tmp_path / "old.idx").read_raw(0) == b"hello"


def test_index_of_another_file_is_caught_up_front(tmp_path):
    write(tmp_path, {0: b"abcdefgh", 1: b"ijkl"})
    (tmp_path / "train.idx").write_text("0\t0\n1\t8\n")
    with pytest.raises(OltrError, match=r"no RecordIO magic at byte 8 .*the .idx does not belong to this .rec"):
        RecordIO(tmp_path / "train.rec", tmp_path / "train.idx")


def test_truncated_file(tmp_path):
    write(tmp_path, {0: b"abcdefgh"})
    data = (tmp_path / "train.rec").read_bytes()
    (tmp_path / "train.rec").write_bytes(data[:-3])
    with pytest.raises(OltrError, match="the file ends inside a record at byte 0"):
        RecordIO(tmp_path / "train.rec", tmp_path / "train.idx")


def test_continuation_offset_is_not_a_record_start(tmp_path):
    write(tmp_path, {0: b"1234" + MAGIC + b"5678"})
    (tmp_path / "train.idx").write_text("0\t12\n")
    with pytest.raises(OltrError, match="is inside a multi-part record"):
        RecordIO(tmp_path / "train.rec", tmp_path / "train.idx")


@pytest.mark.parametrize("idx, message", [("0\t0\n1\n", "line of two integers per record"),
                                          ("0\tx\n", "line of two integers per record"),
                                          ("0\t0\n0\t0\n", "key 0 appears more than once")])
def test_bad_index_files(tmp_path, idx, message):
    write(tmp_path, {0: b"abcd"})
    (tmp_path / "train.idx").write_text(idx)
    with pytest.raises(OltrError, match=message):
        RecordIO(tmp_path / "train.rec", tmp_path / "train.idx")


def test_missing_files_and_keys(tmp_path):
    with pytest.raises(OltrError, match="does not exist"):
        RecordIO(tmp_path / "train.rec", tmp_path / "train.idx")
    rec = write(tmp_path, {0: b"abcd"})
    with pytest.raises(OltrError, match="no record with key 5"):
        rec.read(5)
    with pytest.raises(OltrError, match="too short for an image-record header"):
        rec.read(0)


def test_pickles_for_dataloader_workers(tmp_path):
    rec = write(tmp_path, {0: b"abcd", 1: b"efgh"})
    rec.read_raw(0)
    clone = pickle.loads(pickle.dumps(rec))
    assert clone.read_raw(1) == b"efgh"


def test_list_path_convention(tmp_path):
    write(tmp_path, {5: pack(IRHeader(0, 3.0, 5, 0), b"img")})
    assert parse_record_path("rec:5") == 5
    assert open_split_records(tmp_path).read(parse_record_path("rec:5"))[1] == b"img"
    for bad in ("rec:", "rec:-1", "train/5.jpg", "rec:5.0"):
        with pytest.raises(OltrError, match="expected 'rec:<integer key>'"):
            parse_record_path(bad)

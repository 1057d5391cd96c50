"""MS1M-LT lists (``rec:<key>`` paths) are read from the RecordIO pack by the engine's datasets."""

import json
import pickle
from pathlib import Path

import pytest

from oltr_bench.config import resolve_config
from oltr_bench.data.images import UnreadableImage
from oltr_bench.data.lists import ListDataset, make_reader
from oltr_bench.data.records import RecordReader
from oltr_bench.data.transforms import build_pipeline
from oltr_bench.registry import DATASETS
from tests.tiny_data import TINY, face_png, write_face_pack


def test_reader_returns_the_record_payload_and_pickles(tmp_path):
    write_face_pack(tmp_path / "emore")
    reader = make_reader(tmp_path / "emore", ["rec:3", "rec:40"])
    assert isinstance(reader, RecordReader)
    assert reader(1).data == face_png(40) and reader(0).data == face_png(3)
    clone = pickle.loads(pickle.dumps(reader))  # what DataLoader workers receive
    assert clone(0).data == face_png(3)
    with pytest.raises(UnreadableImage, match=r"train.rec record 9999 cannot be read"):
        make_reader(tmp_path / "emore", ["rec:9999"])(0)


def test_ms1m_split_trains_and_evaluates_from_records(tmp_path, cli):
    write_face_pack(tmp_path / "emore")
    split = DATASETS.get("ms1m")().make_splits(
        tmp_path / "splits", seed=0, overwrite=False, progress=False, root=tmp_path / "emore",
        train_fraction=0.5, val_per_class=1, test_per_class=2, open_per_class=2,
    )
    data = ListDataset(split, "train", build_pipeline(resolve_config("plain", "tiny", {}, TINY).data, False))
    x, label, index, _ = data[0]
    assert tuple(x.shape) == (3, 16, 16) and label == split.entries("train")[0][1]
    args = ["run", "--method", "plain", "--splits", str(split.path), "--quick", "--no-progress", "--device", "cpu"]
    for override in TINY:
        args += ["--set", override]
    run_dir = Path(cli(*args).output.strip().splitlines()[-1])
    results = json.loads((run_dir / "results.json").read_text())
    assert results["dataset"] == "ms1m_lt" and results["counts"]["known"] > 0 and results["counts"]["open"] > 0

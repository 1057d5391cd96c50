"""The feature cache: images skipped as unreadable are recorded and read again, the key, rank 0 decides."""

from __future__ import annotations

import json
import os
import shutil
import socket
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
import torch.multiprocessing as mp

from oltr_bench.data.images import UnreadableImage
from oltr_bench.engine.distributed import Dist
from oltr_bench.engine.features import CachedInputs, FeatureCache
from oltr_bench.method import Method
from oltr_bench.engine.runner import run_method
from oltr_bench.engine.engine import Engine
from oltr_bench.errors import OltrError
from oltr_bench.registry import METHODS
from oltr_bench.splits.format import load_split_dir
from tests.tiny_data import TINY, TRAIN_COUNTS, make_tiny_split, tiny_config

PATHS = [f"c/{i}.png" for i in range(5)]


@METHODS.register("_head_only")
class HeadOnly(Method):
    """Test-only stage 2: a new linear head on the frozen plain backbone (like cRT), so trained on cached features."""

    stage, init_from, frozen_backbone = 2, "plain", True

    def adapt_init_state(self, state):
        return {k: v for k, v in state.items() if not k.startswith("head.")}


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    return make_tiny_split(tmp_path_factory.mktemp("tiny"))


def fake_compute(unreadable: set[int], calls: list[list[int]]):
    """Rows ``[p, p]`` for list position p; positions in ``unreadable`` are skipped, as with --skip-corrupt."""
    def compute(positions):
        calls.append(list(positions))
        for p in positions:
            if p not in unreadable:
                yield np.full((1, 2), float(p), np.float32), np.asarray([p])
    return compute


def test_files_left_by_crashed_builds_are_removed_once_stale(tmp_path):
    """A build that crashed after writing its rows leaves multi-GB files no json names: they go once a day old."""
    FeatureCache(tmp_path, "features", Dist(), token="a").get("train", PATHS, fake_compute(set(), []))
    crashed = [tmp_path / "train.crashed.npy", tmp_path / "train.crashed.index.npy", tmp_path / ".train.crashed.part0-of-1.npy"]
    running = tmp_path / ".train.running.part0-of-1.npy"  # another process building right now
    for file in [*crashed, running]:
        file.write_bytes(b"x")
    day_old = os.stat(tmp_path / "train.json").st_mtime - 25 * 3600
    for file in [*crashed, tmp_path / "train.a.npy", tmp_path / "train.a.index.npy"]:
        os.utime(file, (day_old, day_old))
    data = FeatureCache(tmp_path, "features", Dist(), token="b").get("train", PATHS, fake_compute(set(), []))
    assert data["index"].tolist() == [0, 1, 2, 3, 4]  # the named (old) build is kept and used
    assert sorted(p.name for p in tmp_path.iterdir()) == [".train.running.part0-of-1.npy", "train.a.index.npy", "train.a.npy", "train.json"]


def test_skipped_rows_are_recorded_and_read_again(tmp_path):
    calls: list[list[int]] = []
    cache = FeatureCache(tmp_path, "features", Dist(), token="a")
    data = cache.get("train", PATHS, fake_compute({1, 3}, calls))
    assert calls == [[0, 1, 2, 3, 4]] and data["index"].tolist() == [0, 2, 4] and data["skipped"] == [1, 3]
    assert json.loads((tmp_path / "train.json").read_text())["skipped"] == [1, 3]

    # A later use reads the skipped images again: image 1 was repaired and joins the cache in list order.
    data = FeatureCache(tmp_path, "features", Dist(), token="b").get("train", PATHS, fake_compute({3}, calls))
    assert calls[1:] == [[1, 3]] and data["skipped"] == [3]
    assert data["index"].tolist() == [0, 1, 2, 4] and data["inputs"].tolist() == [[0, 0], [1, 1], [2, 2], [4, 4]]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["train.b.index.npy", "train.b.npy", "train.json"]  # old build removed

    # Still unreadable: nothing changes; nothing skipped: the cache is used as it is.
    assert FeatureCache(tmp_path, "features", Dist(), token="c").get("train", PATHS, fake_compute({3}, calls))["skipped"] == [3]
    assert (tmp_path / "train.b.npy").is_file() and calls[2:] == [[3]]
    data = FeatureCache(tmp_path, "features", Dist(), token="d").get("train", PATHS, fake_compute(set(), calls))
    assert data["skipped"] == [] and data["inputs"][:, 0].tolist() == [0, 1, 2, 3, 4]
    FeatureCache(tmp_path, "features", Dist(), token="e").get("train", PATHS, fake_compute(set(), calls))
    assert calls[4:] == []

    # Rows of another list (another --quick subset) are never reused.
    FeatureCache(tmp_path, "features", Dist(), token="f").get("train", PATHS[:4], fake_compute(set(), calls))
    assert calls[4:] == [[0, 1, 2, 3]]

    # A split with no readable image at first.
    assert FeatureCache(tmp_path, "features", Dist(), token="g").get("val", PATHS[:2], fake_compute({0, 1}, []))["skipped"] == [0, 1]
    data = FeatureCache(tmp_path, "features", Dist(), token="h").get("val", PATHS[:2], fake_compute(set(), []))
    assert data["inputs"].tolist() == [[0, 0], [1, 1]] and data["skipped"] == []


def _corrupt_copy(tiny, tmp_path, position: int):
    shutil.copytree(tiny.path, tmp_path / "tiny")
    split = load_split_dir(tmp_path / "tiny")
    path = split.root("train") / split.entries("train")[position][0]
    good = path.read_bytes()
    path.write_bytes(good[:40])
    return split, path, good


@pytest.mark.slow
def test_reused_cache_counts_fails_on_or_repairs_a_skipped_image(tiny, tmp_path):
    # Train position 47 is the first image of class 5 (4 images), so --quick keeps it.
    split, bad, good = _corrupt_copy(tiny, tmp_path, sum(TRAIN_COUNTS[:5]))
    runs = tmp_path / "runs"

    def run(*extra, **kwargs):
        return run_method("_head_only", split, runs_root=runs, overrides=[*TINY, *extra], quick=True, progress=False,
                          **kwargs)

    def manifest(run_dir):
        return json.loads((run_dir / "manifest.json").read_text())

    first = manifest(run("data.skip_corrupt=true"))
    assert first["unreadable_images"] == {"count": 1, "paths": [str(bad)]}
    assert first["feature_cache"]["skipped"]["train"] == 1 and first["feature_cache"]["reused"]["train"] is False
    stage1 = Path(first["stage1_run"])
    again = manifest(run("data.skip_corrupt=true"))
    assert again["feature_cache"]["reused"]["train"] is True and again["feature_cache"]["path"] == first["feature_cache"]["path"]
    assert again["unreadable_images"] == {"count": 1, "paths": [str(bad)]}  # counted again, not silently dropped

    with pytest.raises(UnreadableImage, match=str(bad)):  # without --skip-corrupt: as without a cache
        run(stage1=stage1)

    bad.write_bytes(good)  # repaired: it joins the cache
    repaired = manifest(run(stage1=stage1))
    cache = repaired["feature_cache"]
    assert repaired["unreadable_images"]["count"] == 0 and cache["reused"]["train"] is True and cache["skipped"]["train"] == 0
    meta = json.loads((Path(cache["path"]) / "train.json").read_text())
    assert meta["skipped"] == [] and meta["rows"] == sum(min(n, 8) for n in TRAIN_COUNTS)

    # bf16 features are not fp32 features: another key, another cache.
    bf16 = manifest(run("train.precision=bf16", stage1=stage1))["feature_cache"]
    assert bf16["computed_in"] == "bf16 autocast" and bf16["path"] != cache["path"] and bf16["reused"]["train"] is False


def test_cached_training_batches_never_drop_a_row_silently(tiny, tmp_path):
    engine = Engine(tiny_config("_head_only"), tiny, tmp_path)
    n = engine.data.num_samples("train")
    rows = [i for i in range(n) if i != 2]
    cached = CachedInputs(engine, SimpleNamespace(path=tmp_path / "cache", level="features"))
    cached.split = lambda which: {"inputs": np.arange(n, dtype=np.float32)[rows, None], "index": np.asarray(rows), "skipped": []}
    image = tiny.root("train") / tiny.entries("train")[2][0]
    with pytest.raises(OltrError, match=f"has no row for training image {image}"):
        list(cached.train_batches([[(0, 0), (2, 0)]]))
    engine.cfg.data.skip_corrupt = True  # then the image was skipped and counted when the cache was read
    (batch,) = cached.train_batches([[(0, 0), (2, 0)]])
    assert batch.index.tolist() == [0] and batch.x.tolist() == [[0.0]]


# -- under DDP rank 0 decides ----------------------------------------------------------------
def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _worker(rank: int, port: int, cache_dir: str, split_path: str, image_cache: str, out: str) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), WORLD_SIZE="2", RANK=str(rank), LOCAL_RANK=str(rank))
    torch.set_num_threads(1)
    from oltr_bench.data import image_cache as image_cache_module
    from oltr_bench.engine import distributed

    if rank == 1:  # another rank looking at the caches itself could see them differently and leave the collectives
        def refuse(*args, **kwargs):
            raise AssertionError("rank 1 looked at a cache's completeness itself")

        original_read = Path.read_text
        Path.read_text = lambda self, *a, **k: refuse() if "feature_cache" in self.parts and self.suffix == ".json" else original_read(self, *a, **k)
        image_cache_module.is_complete = refuse
    dist = distributed.setup("cpu")
    try:
        for token in ("a", "b"):  # a build, then a retry of the skipped row
            data = FeatureCache(Path(cache_dir), "features", dist, token).get("train", PATHS, fake_compute({3} if token == "a" else set(), []))
        engine = Engine(tiny_config("plain", f"data.image_cache={image_cache}"), load_split_dir(split_path), Path(out), dist=dist)
        n_val = len(engine.data.dataset("val", train=False))
        np.save(Path(out) / f"rank{rank}.npy", np.concatenate([data["index"], data["inputs"][:, 0], [n_val]]))
    finally:
        distributed.teardown(dist)


@pytest.mark.slow
def test_ranks_take_rank_0s_reading_of_the_caches(tiny, tmp_path):
    mp.spawn(_worker, args=(_free_port(), str(tmp_path / "feature_cache"), str(tiny.path), str(tmp_path / "images"), str(tmp_path)),
             nprocs=2, join=True)
    a, b = (np.load(tmp_path / f"rank{r}.npy") for r in (0, 1))
    assert a.tolist() == b.tolist() == [0, 1, 2, 3, 4, 0, 1, 2, 3, 4, 12]

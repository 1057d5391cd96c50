"""Data: samplers (class-aware structure, sharding, resumable state), transforms (parity, fast, jitter),
readers, unreadable images and the pre-resized image cache."""

from __future__ import annotations

import dataclasses
import io
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torchvision.transforms import functional as TF

from oltr_bench.config import resolve_config
from oltr_bench.config.schema import DataConfig
from oltr_bench.data import image_cache, lists
from oltr_bench.data.images import RawImage, UnreadableImage
from oltr_bench.data.lists import ListDataset, Skipped, collate, make_reader, path_scheme, register_reader
from oltr_bench.data.samplers import ClassAwareStream, InstanceStream, epoch_batches, sample_seeds
from oltr_bench.data.transforms import IMAGENET_MEAN, IMAGENET_STD, FastPipeline, ParityPipeline, color_jitter, resized_crop_box
from oltr_bench.engine.runner import run_method
from oltr_bench.errors import OltrError
from tests.tiny_data import TINY, make_tiny_split

LABELS = [0] * 10 + [1] * 5 + [2] * 3 + [3] * 1


# -- samplers --------------------------------------------------------------------------------
def test_class_aware_stream_structure():
    stream = ClassAwareStream(LABELS, samples_per_class=4, seed=0)
    out = stream.take(4 * 8)
    labels = np.asarray(LABELS)[out].reshape(8, 4)
    assert all(len(set(block)) == 1 for block in labels)  # 4 consecutive images of one class
    drawn = labels[:, 0]
    assert sorted(drawn[:4]) == [0, 1, 2, 3] and sorted(drawn[4:]) == [0, 1, 2, 3]  # classes cycle
    # Per class: a shuffled cycle (each image once per pass), reshuffled at every wrap.
    class1 = [i for i in out if LABELS[i] == 1]
    assert sorted(class1[:5]) == list(range(10, 15)) and len(class1) == 8
    class3 = [i for i in out if LABELS[i] == 3]
    assert class3 == [18] * 8


def test_streams_resume_from_their_state():
    for make in (lambda: ClassAwareStream(LABELS, 4, seed=3), lambda: InstanceStream(len(LABELS), seed=3)):
        a = make()
        a.take(12)
        state = a.state_dict()
        expected = [a.take(12).tolist() for _ in range(3)]
        b = make()
        b.load_state_dict(state)
        assert [b.take(12).tolist() for _ in range(3)] == expected and b.position == a.position


def test_instance_epochs_are_permutations_without_repeats():
    stream = InstanceStream(19, seed=0)
    first, second = stream.take(16), stream.take(16)
    assert len(set(first.tolist())) == 16 and len(set(second.tolist())) == 16 and first.tolist() != second.tolist()


def test_ranks_share_one_global_stream():
    single = epoch_batches(ClassAwareStream(LABELS, 4, seed=1), steps=3, batch=8, seed=5)
    shares = [epoch_batches(ClassAwareStream(LABELS, 4, seed=1), steps=3, batch=8, seed=5, rank=r, world_size=2) for r in range(2)]
    for step in range(3):
        assert shares[0][step] + shares[1][step] == single[step]  # disjoint halves, in order, same seeds
    with pytest.raises(OltrError, match="cannot be split evenly over 3 processes"):
        epoch_batches(ClassAwareStream(LABELS, 4, seed=1), steps=1, batch=8, seed=5, rank=0, world_size=3)


def test_sample_seeds_depend_on_seed_and_position_only():
    assert sample_seeds(7, 10, 5).tolist() == sample_seeds(7, 0, 15)[10:].tolist()
    seeds = sample_seeds(7, 0, 10000)
    assert len(set(seeds.tolist())) == 10000 and (seeds >= 0).all()
    assert sample_seeds(8, 0, 5).tolist() != sample_seeds(7, 0, 5).tolist()


# -- transforms ------------------------------------------------------------------------------
def jpeg(width=500, height=375, seed=0, quality=95) -> bytes:
    rng = np.random.default_rng(seed)
    coarse = rng.normal(size=(6, 8, 3)).astype(np.float32)
    smooth = np.stack([np.asarray(Image.fromarray(coarse[..., c]).resize((width, height), Image.BICUBIC)) for c in range(3)], -1)
    pixels = np.clip(128 + 50 * smooth + rng.normal(0, 4, (height, width, 3)), 0, 255).astype(np.uint8)
    buf = io.BytesIO()
    Image.fromarray(pixels).save(buf, "JPEG", quality=quality)
    return buf.getvalue()


DATA = DataConfig(image_size=224, resize=256, decode="cpu")


def test_resized_crop_box_follows_torchvision_constraints():
    import random

    rng = random.Random(0)
    for _ in range(500):
        top, left, h, w = resized_crop_box(500, 375, rng)
        assert 0 <= top and top + h <= 375 and 0 <= left and left + w <= 500
        assert 0.08 * 0.95 <= h * w / (500 * 375) <= 1.0 and 3 / 4 * 0.95 <= w / h <= 4 / 3 * 1.05
    assert resized_crop_box(1000, 10, random.Random(0)) == (0, 493, 10, 13)  # fallback: central crop, ratio clamped


def test_parity_and_fast_draw_the_same_augmentation_and_agree():
    raw = RawImage("x.jpg", data=jpeg())
    for train in (True, False):
        parity, fast = ParityPipeline(DATA, train), FastPipeline(DATA, train)
        for seed in (1, 2, 3):
            p, _ = parity.sample(raw, seed)
            x, aux = fast.sample(raw, seed)
            assert x.dtype == torch.uint8 and x.shape == (3, 224, 224)
            f = fast.batch(x[None], aux[None], torch.device("cpu"))[0]
            # Same crop, flip and jitter; only resampling and rounding differ.
            assert float((f - p).abs().mean()) < 0.05, (train, seed)
        if train:
            a, b = parity.sample(raw, 1)[0], parity.sample(raw, 2)[0]
            assert not torch.equal(a, b) and torch.equal(a, parity.sample(raw, 1)[0])


def test_color_jitter_matches_torchvision_tensor_ops():
    x = torch.rand(2, 3, 8, 8)
    aux = torch.tensor([[1.3, 0.7, 1.2, 2, 0, 1], [0.6, 1.4, 0.8, 1, 2, 0]])
    out = color_jitter(x.clone(), aux)
    ops = (TF.adjust_brightness, TF.adjust_contrast, TF.adjust_saturation)
    for i in range(2):
        ref = x[i]
        for op in aux[i, 3:].long().tolist():
            ref = ops[op](ref, float(aux[i, op]))
        torch.testing.assert_close(out[i], ref, atol=1e-6, rtol=0)


def test_fast_decodes_large_jpegs_at_reduced_size(monkeypatch):
    raw = RawImage("big.jpg", data=jpeg(2000, 1500, seed=3))
    fast = FastPipeline(DATA, train=False)
    calls = []
    monkeypatch.setattr(RawImage, "reduced_pil", lambda self, f, _orig=RawImage.reduced_pil: calls.append(f) or _orig(self, f))
    x, _ = fast.sample(raw, 0)
    assert calls == [4]  # the 1312-px centre crop needs no more than 1/4 of the pixels for 224 px
    full = ParityPipeline(DATA, train=False).sample(raw, 0)[0]
    assert float((fast.batch(x[None], torch.zeros(1, 0), torch.device("cpu"))[0] - full).abs().mean()) < 0.05


def test_device_decode_equals_worker_decode_on_the_same_device():
    raw = RawImage("x.jpg", data=jpeg(seed=4))
    cpu, device = FastPipeline(DATA, True), FastPipeline(dataclasses.replace(DATA, decode="device"), True)
    items = [cpu.sample(raw, s) for s in (5, 6)]
    encoded = [device.sample(raw, s) for s in (5, 6)]
    assert encoded[0][0].dim() == 1  # the workers pass the JPEG bytes on
    a = cpu.batch(torch.stack([i[0] for i in items]), torch.stack([i[1] for i in items]), torch.device("cpu"))
    b = device.batch([e[0] for e in encoded], [e[1] for e in encoded], torch.device("cpu"))
    torch.testing.assert_close(a, b, atol=0, rtol=0)


def test_normalisation_constants_are_imagenets():
    x = torch.full((1, 3, 2, 2), 255, dtype=torch.uint8)
    out = FastPipeline(DATA, train=False).batch(x, torch.zeros(1, 0), torch.device("cpu"))
    expected = [(1 - m) / s for m, s in zip(IMAGENET_MEAN, IMAGENET_STD)]
    torch.testing.assert_close(out[0, :, 0, 0], torch.tensor(expected))


def test_jpeg_size_reads_the_frame_header():
    from oltr_bench.data.images import jpeg_size

    for kwargs in ({}, {"progressive": True}, {"exif": Image.Exif().tobytes()}, {"subsampling": 2, "quality": 50}):
        buf = io.BytesIO()
        Image.new("RGB", (123, 45), (9, 99, 199)).save(buf, "JPEG", **kwargs)
        assert jpeg_size(buf.getvalue()) == (123, 45), kwargs
    assert jpeg_size(b"\xff\xd8\x00garbage") is None


# -- readers and unreadable images -------------------------------------------------------------
@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    return make_tiny_split(tmp_path_factory.mktemp("tiny"))


def embedded_pipeline(train=False):
    from oltr_bench.data.transforms import build_pipeline

    return build_pipeline(resolve_config("plain", "tiny", {}, TINY).data, train)


def test_schemes_plug_in_readers(tmp_path):
    assert path_scheme("rec:12") == "rec" and path_scheme("a/b:c.jpg") == "" and path_scheme("x.jpg") == ""
    with pytest.raises(OltrError, match="list paths 'mem:...' under .* have no reader; known schemes: .*rec"):
        make_reader(tmp_path, ["mem:1"])
    with pytest.raises(OltrError, match="mixes path kinds"):
        make_reader(tmp_path, ["mem:1", "a.jpg"])

    @register_reader("mem")
    def mem(root, paths):
        return lambda i: RawImage(paths[i], data=jpeg(40, 30, seed=int(paths[i][4:])))

    try:
        reader = make_reader(tmp_path, ["mem:1", "mem:2"])
        assert reader(1).size() == (40, 30) and reader(1).path == "mem:2"
    finally:
        lists.READERS.pop("mem")


def corrupt_copy(tiny, tmp_path, which="train", index=0):
    """A copy of the tiny split with one image of ``which`` truncated."""
    import shutil

    shutil.copytree(tiny.path, tmp_path / "tiny")
    from oltr_bench.splits.format import load_split_dir

    split = load_split_dir(tmp_path / "tiny")
    path = split.root(which) / split.entries(which)[index][0]
    path.write_bytes(path.read_bytes()[:40])
    return split, path


def test_unreadable_images_fail_with_the_path_or_are_skipped(tiny, tmp_path):
    split, bad = corrupt_copy(tiny, tmp_path)
    reason = "cannot be decoded (not an image file PIL recognises)"
    # Without skipping the failure is fatal: raise_failures (in the main process) raises it.
    fatal = ListDataset(split, "train", embedded_pipeline())[0]
    assert fatal == Skipped(0, str(bad), reason, fatal=True, unreadable=True)
    with pytest.raises(UnreadableImage, match=f"image {bad} cannot be decoded.*--skip-corrupt"):
        lists.raise_failures(collate([fatal]).skipped)
    dataset = ListDataset(split, "train", embedded_pipeline(), skip_corrupt=True)
    assert dataset[0] == Skipped(0, str(bad), reason, fatal=False, unreadable=True)
    batch = collate([dataset[(i, 0)] for i in range(3)])
    lists.raise_failures(batch.skipped)  # nothing fatal
    assert [s.path for s in batch.skipped] == [str(bad)] and batch.index.tolist() == [1, 2] and batch.x.shape[0] == 2
    gone = split.root("train") / split.entries("train")[1][0]
    gone.unlink()
    with pytest.raises(UnreadableImage, match=f"image {gone} does not exist"):
        lists.raise_failures([ListDataset(split, "train", embedded_pipeline())[1]])


@pytest.mark.slow
def test_engine_counts_skipped_images_and_fails_without_the_flag(tiny, tmp_path):
    split, bad = corrupt_copy(tiny, tmp_path, which="test")
    with pytest.raises(UnreadableImage, match=str(bad)):
        run_method("plain", split, runs_root=tmp_path / "runs", overrides=TINY, progress=False)
    (failed,) = (tmp_path / "runs" / "tiny" / "plain").iterdir()
    assert json.loads((failed / "manifest.json").read_text())["status"] == "failed" and not (failed / "results.json").exists()

    run_dir = run_method("plain", split, runs_root=tmp_path / "runs2", overrides=[*TINY, "data.skip_corrupt=true"],
                         progress=False)
    manifest = json.loads((run_dir / "manifest.json").read_text())
    assert manifest["unreadable_images"] == {"count": 1, "paths": [str(bad)]}
    results = json.loads((run_dir / "results.json").read_text())
    assert results["partial"] is True and results["counts"]["known"] == 6 * 3 - 1


# -- image cache -----------------------------------------------------------------------------
def test_image_cache_round_trip_and_parity_eval_is_unchanged(tmp_path):
    files = {f"a/{i}.jpg": jpeg(80 + 10 * i, 60, seed=i, quality=90) for i in range(5)}
    for name, data in files.items():
        (tmp_path / "img" / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / "img" / name).write_bytes(data)
    paths = list(files)
    reader = make_reader(tmp_path / "img", paths)
    cache = tmp_path / "cache" / "c"
    for rank in range(2):  # two ranks' parts
        assert image_cache.build_part(cache, rank, 2, reader, len(paths), 48, workers=0, skip_corrupt=False) == []
    image_cache.write_meta(cache, len(paths), 48, 2, {})
    cached = image_cache.ImageCacheReader(cache, paths, tmp_path / "img", reader)
    eval_parity = ParityPipeline(DataConfig(image_size=40, resize=48, decode="cpu"), train=False)
    for i in range(len(paths)):
        expected = np.asarray(image_cache.resize_shorter(reader(i).pil(), 48))
        assert np.array_equal(cached(i).array, expected) and cached(i).path == str(tmp_path / "img" / paths[i])
        assert torch.equal(eval_parity.sample(cached(i), 0)[0], eval_parity.sample(reader(i), 0)[0])


def test_image_cache_reads_an_image_skipped_at_build_time_from_its_file(tmp_path):
    """Unreadable when the cache was built: still unreadable fails with its path; repaired, it is used."""
    good = jpeg(80, 60, seed=0, quality=90)
    (tmp_path / "img").mkdir()
    (tmp_path / "img" / "0.jpg").write_bytes(good)
    (tmp_path / "img" / "1.jpg").write_bytes(good[:100])  # truncated
    paths = ["0.jpg", "1.jpg"]
    reader = make_reader(tmp_path / "img", paths)
    cache = tmp_path / "cache"
    assert image_cache.build_part(cache, 0, 1, reader, 2, 48, workers=0, skip_corrupt=True) == [str(tmp_path / "img" / "1.jpg")]
    image_cache.write_meta(cache, 2, 48, 1, {})
    cached = image_cache.ImageCacheReader(cache, paths, tmp_path / "img", reader)
    with pytest.raises(UnreadableImage, match=r"1\.jpg"):
        cached(1).pil()
    (tmp_path / "img" / "1.jpg").write_bytes(good)  # repaired
    assert np.array_equal(cached(1).array, np.asarray(image_cache.resize_shorter(reader(0).pil(), 48)))


@pytest.mark.slow
def test_engine_builds_and_reuses_the_image_cache(tiny, tmp_path):
    extra = [*TINY, f"data.image_cache={tmp_path / 'cache'}", "data.image_cache_side=12", "train.epochs=1"]
    first = run_method("plain", tiny, runs_root=tmp_path / "runs", overrides=extra, progress=False)
    caches = json.loads((first / "manifest.json").read_text())["image_cache"]
    assert set(caches) == {"train", "val", "test", "open"}
    assert caches["train"]["side"] == 12 and "lose resolution" in caches["train"]["note"]
    caches = {which: entry["path"] for which, entry in caches.items()}
    meta = json.loads((Path(caches["train"]) / "meta.json").read_text())
    assert meta["images"] == sum(tiny.train_counts) and meta["side"] == 12
    stamp = (Path(caches["train"]) / "part-0.u8").stat().st_mtime_ns
    assert not list(Path(caches["train"]).glob(".part-*"))  # no temporary left behind
    again = run_method("plain", tiny, runs_root=tmp_path / "runs", overrides=extra, progress=False)
    assert (Path(caches["train"]) / "part-0.u8").stat().st_mtime_ns == stamp
    a, b = (np.load(d / "predictions" / "test.npz") for d in (first, again))
    assert np.array_equal(a["logits"], b["logits"])


@pytest.mark.slow
def test_failures_in_loader_workers_reach_the_user_as_clean_errors(tiny, tmp_path):
    """With loader processes (the default), a bad image still fails with its path, not a worker traceback."""
    import pickle

    split, _ = corrupt_copy(tiny, tmp_path)
    error = UnreadableImage("/x.png", "cannot be decoded")
    assert str(pickle.loads(pickle.dumps(error))) == str(error)
    with pytest.raises(UnreadableImage, match=r"image .*\.png cannot be decoded.*--skip-corrupt"):
        run_method("plain", split, runs_root=tmp_path / "runs", overrides=[*TINY, "data.workers=2"], quick=True,
                   progress=False)
    # A transform that fails on an image (here: a crop larger than the image) names the image too.
    with pytest.raises(OltrError, match=r"image .*\.png failed in the train transform \(ValueError"):
        run_method("plain", tiny, runs_root=tmp_path / "runs2", overrides=[*TINY, "data.workers=2", "data.image_size=64"],
                   quick=True, progress=False)

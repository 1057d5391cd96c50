"""Images per second per core: the fast data mode vs the parity (official OLTR) pipeline.

Generates ImageNet-sized JPEGs (500x375, ~110 KB: smooth noise at three scales plus pixel
detail, quality 92, 4:4:4 chroma), then times, in one process with one thread, the per-sample
work a loader worker does for each mode, on the same images and augmentation seeds:

- parity train: decode (PIL) + RandomResizedCrop 224 + flip + ColorJitter + ToTensor + Normalize
- fast train: decode to uint8 (libjpeg-turbo, reduced-size decoding where the crop allows)
  + crop-resize + flip; ColorJitter and Normalize run batched on the device (their CPU cost
  per image is reported separately, for CPU-only training)
- the same for eval (Resize 256 + CenterCrop 224), and both modes on the pre-resized image cache.

Timings are medians over alternating repeats (the development machine is shared).

    python bench/bench_data.py [--images 48] [--repeats 7]
"""

from __future__ import annotations

import argparse
import io
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from oltr_bench.data import image_cache
from oltr_bench.data.images import RawImage
from oltr_bench.data.transforms import FastPipeline, ParityPipeline


def imagenet_like_jpeg(seed: int, width: int = 500, height: int = 375, quality: int = 92) -> bytes:
    """A photo-like JPEG of ImageNet's typical size and file size (~110 KB)."""
    rng = np.random.default_rng(seed)

    def smooth(cells: tuple[int, int], amplitude: float) -> np.ndarray:
        noise = rng.normal(size=(*cells, 3)).astype(np.float32)
        return np.stack([np.asarray(Image.fromarray(noise[..., c]).resize((width, height), Image.BICUBIC)) for c in range(3)], -1) * amplitude

    pixels = 128 + smooth((4, 5), 60) + smooth((16, 20), 30) + smooth((60, 80), 18) + rng.normal(0, 6, (height, width, 3))
    buf = io.BytesIO()
    Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8)).save(buf, "JPEG", quality=quality, subsampling=0)
    return buf.getvalue()


def rate(fn, items) -> float:
    start = time.perf_counter()
    for i, item in enumerate(items):
        fn(item, i)
    return len(items) / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--images", type=int, default=48)
    parser.add_argument("--repeats", type=int, default=7)
    args = parser.parse_args()
    torch.set_num_threads(1)  # one core, as one loader worker

    files = [imagenet_like_jpeg(i) for i in range(args.images)]
    raws = [RawImage(f"img{i}.jpg", data=d) for i, d in enumerate(files)]
    sizes = [len(d) / 1024 for d in files]
    print(f"{len(files)} JPEGs, 500x375, {np.mean(sizes):.0f} KB on average (min {min(sizes):.0f}, max {max(sizes):.0f})")
    with tempfile.TemporaryDirectory() as tmp:
        for i, data in enumerate(files):
            Path(tmp, f"{i}.jpg").write_bytes(data)
        from oltr_bench.data.lists import FileReader

        reader = FileReader(Path(tmp), [f"{i}.jpg" for i in range(len(files))])
        cache = Path(tmp) / "cache"
        image_cache.build_part(cache, 0, 1, reader, len(files), 256, workers=0, skip_corrupt=False)
        image_cache.write_meta(cache, len(files), 256, 1, {})
        cached_reader = image_cache.ImageCacheReader(cache, [f"{i}.jpg" for i in range(len(files))], Path(tmp), reader)
        cached = [cached_reader(i) for i in range(len(files))]

    cfg = {"image_size": 224, "resize": 256, "decode": "cpu"}
    modes = {
        "parity train": (ParityPipeline(cfg, True), raws),
        "fast train": (FastPipeline(cfg, True), raws),
        "parity eval": (ParityPipeline(cfg, False), raws),
        "fast eval": (FastPipeline(cfg, False), raws),
        "parity train, image cache": (ParityPipeline(cfg, True), cached),
        "fast train, image cache": (FastPipeline(cfg, True), cached),
    }
    fast_train = FastPipeline(cfg, True)
    batch = [fast_train.sample(r, i) for i, r in enumerate(raws[:32])]
    x, aux = torch.stack([b[0] for b in batch]), torch.stack([b[1] for b in batch])
    results: dict[str, list[float]] = {name: [] for name in modes}
    results["fast train: device step on this CPU"] = []
    for _ in range(args.repeats):
        for name, (pipeline, items) in modes.items():
            results[name].append(rate(lambda item, i, p=pipeline: p.sample(item, i), items))
        start = time.perf_counter()
        for _ in range(4):
            fast_train.batch(x, aux, torch.device("cpu"))
        results["fast train: device step on this CPU"].append(4 * len(x) / (time.perf_counter() - start))

    med = {name: statistics.median(v) for name, v in results.items()}
    print(f"\n{'mode (one core)':44s} {'img/s':>8s}  {'vs parity':>9s}")
    for name, value in med.items():
        base = med["parity eval"] if "eval" in name else med["parity train, image cache"] if "cache" in name else med["parity train"]
        print(f"{name:44s} {value:8.0f}  {value / base:8.2f}x")
    ratio = med["fast train"] / med["parity train"]
    print(f"\nfast / parity, train, per core: {ratio:.2f}x (target >= 1.8x): {'PASS' if ratio >= 1.8 else 'FAIL'}")
    sys.exit(0)


if __name__ == "__main__":
    main()

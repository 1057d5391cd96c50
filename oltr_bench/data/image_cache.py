"""The optional pre-resized image cache (``data.image_cache: DIR``): decode once, never again.

Every image of a split list is decoded, resized so that its shorter side is at most
``data.image_cache_side`` pixels (PIL bilinear, exactly as ``Resize(side)`` of the eval
transform does, aspect ratio kept) and stored as raw uint8 RGB in a memory-mapped file. Later
epochs and runs read pixels instead of decoding JPEGs, which removes the decode cost (the
largest per-image CPU cost, research/perf.md §2.3) at about 260 KB per ImageNet image.

Effect on the protocol: evaluation (Resize(256) + CenterCrop(224)) on a 256-side cache is
the same computation as on the originals; training crops are taken from the resized image, so
crops larger than 256 pixels lose resolution before being resized to 224 — a small deviation
that the run manifest records.

Layout: ``DIR/<dataset>-<split>-<side>-<key>/`` holds ``part-<r>.u8`` and ``part-<r>.idx.npy``
(offset, height, width per image; height 0 marks an image unreadable when the cache was built,
which is then read from its file whenever it is used) written by
rank ``r`` of the building run for its contiguous share of the list, and ``meta.json``, written
last, which makes the cache valid.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
from PIL import Image

from oltr_bench import formats
from oltr_bench.data.images import RawImage, UnreadableImage
from oltr_bench.data.lists import LOADER_TIMEOUT, Reader, guarded
from oltr_bench.utils.io import atomic_open, atomic_write_bytes, atomic_write_json



def cache_dir(base: Path, dataset: str, which: str, side: int, fingerprint: str, paths: Sequence[str]) -> Path:
    digest = hashlib.sha256("\n".join([fingerprint, which, str(side), *paths]).encode()).hexdigest()[:16]
    return Path(base) / f"{dataset}-{which}-{side}-{digest}"


def resize_shorter(img: Image.Image, side: int) -> Image.Image:
    """Resize so the shorter side is ``side`` (never enlarging), as torchvision's ``Resize(side)`` on PIL."""
    w, h = img.size
    if min(w, h) <= side:
        return img
    if w <= h:
        size = (side, int(side * h / w))
    else:
        size = (int(side * w / h), side)
    return img.resize(size, Image.BILINEAR)


class _Resized:
    """Dataset of resized uint8 arrays (the :class:`UnreadableImage` itself for an unreadable image)."""

    def __init__(self, reader: Reader, indices: Sequence[int], side: int):
        self.reader, self.indices, self.side = reader, list(indices), side

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, i: int):
        try:
            return np.asarray(resize_shorter(self.reader(self.indices[i]).pil(), self.side))
        except UnreadableImage as exc:
            return exc  # raised (or counted) by build_part in the main process, not in a loader worker


def _identity(item):
    return item


def build_part(path: Path, rank: int, world_size: int, reader: Reader, n: int, side: int, *, workers: int,
               skip_corrupt: bool, progress: Callable[[int], Any] | None = None) -> list[str]:
    """Write rank ``rank``'s part of the cache; return the paths skipped as unreadable."""
    import torch

    per = -(-n // world_size)
    indices = range(rank * per, min(n, (rank + 1) * per))
    loader = torch.utils.data.DataLoader(_Resized(reader, indices, side), batch_size=None, num_workers=workers,
                                         collate_fn=_identity, timeout=LOADER_TIMEOUT if workers > 0 else 0)
    path.mkdir(parents=True, exist_ok=True)
    index = np.zeros((len(indices), 3), dtype=np.int64)
    skipped, offset = [], 0
    # A private temporary name: two runs building the same cache concurrently must not share it.
    with atomic_open(path / f"part-{rank}.u8") as fh:
        for j, item in enumerate(guarded(loader)):
            if isinstance(item, UnreadableImage):
                if not skip_corrupt:
                    raise item
                skipped.append(item.path)
                index[j] = (offset, 0, 0)
            else:
                fh.write(np.ascontiguousarray(item).tobytes())
                index[j] = (offset, item.shape[0], item.shape[1])
                offset += item.nbytes
            if progress:
                progress(1)
        buffer = io.BytesIO()
        np.save(buffer, index)
        atomic_write_bytes(path / f"part-{rank}.idx.npy", buffer.getvalue())
    return skipped


def write_meta(path: Path, n: int, side: int, world_size: int, source: dict[str, Any]) -> None:
    atomic_write_json(path / "meta.json", {"format": formats.IMAGE_CACHE, "images": n, "side": side, "parts": world_size, **source})


def is_complete(path: Path) -> bool:
    return (path / "meta.json").is_file()


class ImageCacheReader:
    """Reads a complete cache: image ``i`` is a view into the memory-mapped part that holds it.

    An image that was unreadable when the cache was built is read from ``original`` (and resized
    as the cache would have): once repaired it is used again; still broken, it fails or is
    skipped as it would be without a cache.
    """

    def __init__(self, path: Path, paths: Sequence[str], root: Path, original: Reader):
        meta = json.loads((Path(path) / "meta.json").read_text(encoding="utf-8"))
        self.path, self.parts, self.n = Path(path), int(meta["parts"]), int(meta["images"])
        if self.n != len(paths):
            raise ValueError(f"image cache {path} holds {self.n} images, the list {len(paths)}")
        self.per = -(-self.n // self.parts)
        self.names = [str(Path(root) / p) for p in paths]
        self.side, self.original = int(meta["side"]), original
        self._maps: dict[int, tuple[np.ndarray, np.ndarray]] = {}

    def _part(self, r: int) -> tuple[np.ndarray, np.ndarray]:
        if r not in self._maps:  # opened lazily, so each loader worker maps its own view
            index = np.load(self.path / f"part-{r}.idx.npy")
            size = os.path.getsize(self.path / f"part-{r}.u8")
            data = np.memmap(self.path / f"part-{r}.u8", dtype=np.uint8, mode="r") if size else np.zeros(0, np.uint8)
            self._maps[r] = (index, data)
        return self._maps[r]

    def __getstate__(self):
        return {**self.__dict__, "_maps": {}}

    def __call__(self, i: int) -> RawImage:
        index, data = self._part(i // self.per)
        offset, h, w = index[i % self.per]
        if h == 0:
            return RawImage(self.names[i], array=np.asarray(resize_shorter(self.original(i).pil(), self.side)))
        return RawImage(self.names[i], array=np.array(data[offset:offset + h * w * 3]).reshape(h, w, 3))


"""A tiny long-tailed split with learnable images, for fast engine, data and DDP tests.

Six known classes (a colour and stripe direction each, plus noise) with 14..4 training
images, 2 val and 3 test images per class, and 6 open images; 16x16 PNG files. Configs for it
(:data:`TINY`) use a two-layer glyphnet, batch 8, workers 0, so a 3-epoch run takes a second.

:func:`write_face_pack` writes an MS1M-ArcFace RecordIO pack in miniature, for MS1M-LT tests.
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
from PIL import Image

from oltr_bench.config import resolve_config
from oltr_bench.splits.format import SplitDir, write_split_dir

TRAIN_COUNTS = (14, 12, 9, 7, 5, 4)

TINY = (
    "model.backbone=glyphnet", "model.widths=[8, 16]", "model.input_size=16", "model.feat_dim=null",
    "data.pipeline=embedded", "data.image_size=16", "data.resize=16", "data.workers=0",
    "train.batch_size=8", "train.reference_batch_size=8", "train.epochs=3", "train.scheduler.step_size=2",
    "train.lr.features=0.05", "train.lr.classifier=0.05", "eval.batch_size=16", "log.every_steps=1",
)


def image(label: int, index: int, size: int = 16) -> Image.Image:
    rng = np.random.default_rng(1000 * (label + 1) + index)
    yy, xx = np.mgrid[0:size, 0:size]
    stripes = np.sin((xx if label % 2 else yy) * (1 + label % 3)) * 60
    colour = np.array([(label * 40) % 256, (255 - label * 30) % 256, (label * 90) % 256], dtype=np.float32)
    pixels = colour + stripes[..., None] + rng.normal(0, 20, (size, size, 3))
    return Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8))


def make_tiny_split(root: Path, ext: str = ".png") -> SplitDir:
    """Write the tiny split (lists, manifest, images) under ``root/tiny`` and return it."""
    lists: dict[str, list[tuple[str, int]]] = {"train": [], "val": [], "test": [], "open": []}

    def populate(tmp: Path) -> None:
        for split, entries in lists.items():
            for path, label in entries:
                (tmp / "images" / path).parent.mkdir(parents=True, exist_ok=True)
                index = int(Path(path).stem)
                image(label if label >= 0 else 10 + index % 3, index).save(tmp / "images" / path)

    for c, n in enumerate(TRAIN_COUNTS):
        counts = {"train": n, "val": 2, "test": 3}
        start = 0
        for split, k in counts.items():
            lists[split] += [(f"c{c}/{i:03d}{ext}", c) for i in range(start, start + k)]
            start += k
    lists["open"] = [(f"open/{i:03d}{ext}", -1) for i in range(6)]
    return write_split_dir(root / "tiny", dataset="tiny", classes=[f"c{c}" for c in range(len(TRAIN_COUNTS))], lists=lists,
                           roots={s: "images" for s in lists}, source={"kind": "test", "seed": 0}, populate=populate)


def tiny_config(method: str = "plain", *extra: str, defaults: dict | None = None) -> dict:
    return resolve_config(method, "tiny", defaults or {}, [*TINY, *extra])


FACE_IDENTITY_SIZES = (40, 30, 24, 20, 16, 12, 10, 9, 8, 6)


def face_png(key: int) -> bytes:
    """The 16x16 PNG of record ``key`` in :func:`write_face_pack`'s pack."""
    rng = np.random.default_rng(key)
    buffer = io.BytesIO()
    Image.fromarray(rng.integers(0, 256, (16, 16, 3), dtype=np.uint8)).save(buffer, format="PNG")
    return buffer.getvalue()


def write_face_pack(folder: Path) -> None:
    """An MS1M-ArcFace layout in miniature: ``train.rec``/``train.idx`` with ten identities of
    :data:`FACE_IDENTITY_SIZES` images each (record key = image number, label = identity)."""
    from oltr_bench.formats.recordio import IRHeader, RecordIOWriter, pack

    folder.mkdir(parents=True)
    key = 0
    with RecordIOWriter(folder / "train.rec", folder / "train.idx") as writer:
        for ident, n in enumerate(FACE_IDENTITY_SIZES):
            for _ in range(n):
                writer.write(key, pack(IRHeader(0, float(ident), key, 0), face_png(key)))
                key += 1

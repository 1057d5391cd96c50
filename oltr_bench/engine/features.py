"""Feature cache for stages whose backbone is frozen (cRT, LWS, τ-norm, OpenMax fitting, ...).

The frozen part of the backbone runs once per image; its outputs are stored on disk and the
trainable part trains and evaluates on them, so an epoch costs a head update instead of a
backbone forward pass and the image decoding. What is cached depends on what still trains:

- ``features``: nothing before the head trains -> the feature vectors;
- ``map``: only what follows the frozen body trains (``fc_add``; DME's attention on the map) ->
  the body's last map (:meth:`~oltr_bench.engine.method.MethodModel.cache_level` decides).

Protocol difference, recorded in the run manifest (:data:`BATCHNORM_NOTE`): cached outputs are
computed with the backbone in eval mode (BatchNorm running statistics) and the evaluation
transform, one centre crop per image. The official code keeps a frozen backbone in train mode,
so its BatchNorm uses batch statistics and keeps updating its running statistics, and it draws
new training augmentations every epoch. ``train.feature_cache: false`` runs the official way.

Cache directory: ``<stage-1 run>/feature_cache/<key>/`` (shared by every stage-2 run of that
stage-1 run; the key hashes the frozen weights, the level, the evaluation transform and the
list), one ``<split>.npy`` + ``<split>.index.npy`` per split, ``<split>.json`` written last.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any, Callable, Iterable

import numpy as np
import torch
from numpy.lib.format import open_memmap

from oltr_bench.engine import distributed
from oltr_bench.engine.distributed import Dist
from oltr_bench.engine.method import MethodModel
from oltr_bench.utils.io import atomic_write_json

BATCHNORM_NOTE = (
    "cached outputs were computed once per image with the frozen backbone in eval mode (BatchNorm running "
    "statistics) and the evaluation transform (one centre crop, no augmentation); the official code keeps the "
    "frozen backbone in train mode (batch statistics, running statistics still updating) and augments every epoch"
)


def cache_key(model: MethodModel, level: str, transform: dict[str, Any], fingerprint: str, subsets: dict[str, list[int]]) -> str:
    """Hash of the frozen weights, the level, the evaluation transform and the lists."""
    h = hashlib.sha256(json.dumps({"level": level, "transform": transform, "fingerprint": fingerprint}, sort_keys=True).encode())
    frozen = model.backbone.body if level == "map" else model.backbone
    for name, tensor in sorted(frozen.state_dict().items()):
        h.update(name.encode())
        h.update(tensor.detach().cpu().contiguous().view(-1).view(torch.uint8).numpy().tobytes())
    for which in sorted(subsets):
        h.update(f"{which}:{','.join(map(str, subsets[which]))}".encode())
    return h.hexdigest()[:20]


class FeatureCache:
    """The cached frozen-backbone outputs of each split, computed on first use."""

    def __init__(self, path: Path, level: str, dist: Dist, token: str):
        self.path = Path(path)
        self.level = level
        self.dist = dist
        self.token = token  # same on every rank, different per run: concurrent builders never share files
        self.reused: dict[str, bool] = {}
        self._loaded: dict[str, dict[str, Any]] = {}

    def complete(self, which: str) -> bool:
        return (self.path / f"{which}.json").is_file()

    def get(self, which: str, rows: int, compute: Callable[[], Iterable[tuple[np.ndarray, np.ndarray]]]) -> dict[str, Any]:
        """``{"inputs": [N, ...] float32 array, "index": [N] list positions}`` of split ``which``.

        On first use every rank runs ``compute``, which yields (outputs, list positions) batches
        of its share of at most ``rows`` images; rank 0 merges the shares.
        """
        if which not in self._loaded:
            reused = self.complete(which)
            if not reused:
                self._build(which, rows, compute)
            self.reused[which] = reused
            inputs = np.load(self.path / f"{which}.npy", mmap_mode="r" if self.level == "map" else None)
            self._loaded[which] = {"inputs": inputs, "index": np.load(self.path / f"{which}.index.npy")}
        return self._loaded[which]

    def _part(self, which: str, rank: int, suffix: str) -> Path:
        return self.path / f".{which}.{self.token}.part{rank}-of-{self.dist.world_size}{suffix}"

    def _build(self, which: str, rows: int, compute) -> None:
        self.path.mkdir(parents=True, exist_ok=True)
        out, at, positions = None, 0, []
        for values, pos in compute():
            if out is None:
                out = open_memmap(self._part(which, self.dist.rank, ".npy"), mode="w+", dtype=np.float32, shape=(rows, *values.shape[1:]))
            out[at:at + len(values)] = values
            at += len(values)
            positions.append(pos)
        if out is not None:
            out.flush()
            del out
        np.save(self._part(which, self.dist.rank, ".index.npy"), np.concatenate(positions) if positions else np.zeros(0, np.int64))
        distributed.barrier(self.dist)
        if self.dist.is_main:
            self._merge(which)
        distributed.barrier(self.dist)

    def _merge(self, which: str) -> None:
        world = self.dist.world_size
        indices = [np.load(self._part(which, r, ".index.npy")) for r in range(world)]
        arrays = [np.load(self._part(which, r, ".npy"), mmap_mode="r") if len(i) else None for r, i in enumerate(indices)]
        shape = next((a.shape[1:] for a in arrays if a is not None), (0,))
        total = sum(len(i) for i in indices)
        tmp = self.path / f".{which}.{self.token}.npy.tmp"
        out = open_memmap(tmp, mode="w+", dtype=np.float32, shape=(total, *shape))
        at = 0
        for array, index in zip(arrays, indices):
            if array is not None:
                out[at:at + len(index)] = array[: len(index)]
                at += len(index)
        out.flush()
        del out, arrays
        np.save(self.path / f"{which}.index.npy", np.concatenate(indices))
        os.replace(tmp, self.path / f"{which}.npy")
        for r in range(world):
            for suffix in (".npy", ".index.npy"):
                self._part(which, r, suffix).unlink(missing_ok=True)
        atomic_write_json(self.path / f"{which}.json", {"split": which, "rows": total, "shape": list(shape), "level": self.level})

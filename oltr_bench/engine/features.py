"""Feature cache for stages whose backbone is frozen (cRT, LWS, τ-norm, OpenMax fitting, ...).

The frozen part of the backbone runs once per image; its outputs are stored on disk and the
trainable part trains and evaluates on them, so an epoch costs a head update instead of a
backbone forward pass and the image decoding. What is cached depends on what still trains:

- ``features``: nothing before the head trains -> the feature vectors;
- ``map``: only what follows the frozen body trains (``fc_add``; DME's attention on the map) ->
  the body's last map (:meth:`~oltr_bench.method.MethodModel.cache_level` decides).

Protocol difference, recorded in the run manifest (:data:`BATCHNORM_NOTE`): cached outputs are
computed with the backbone in eval mode (BatchNorm running statistics) and the evaluation
transform, one centre crop per image. The official code keeps a frozen backbone in train mode,
so its BatchNorm uses batch statistics and keeps updating its running statistics, and it draws
new training augmentations every epoch. ``train.feature_cache: false`` runs the official way.

Cache directory: ``<stage-1 run>/feature_cache/<key>/`` (shared by every stage-2 run of that
stage-1 run; the key hashes the frozen weights, the level, the evaluation transform, the autocast
precision, the split and the ``--quick`` subset settings). Per split, ``<split>.json`` is written
last and names the rows' files (``<split>.<build>.npy`` and ``<split>.<build>.index.npy``), the
list they belong to, and the list positions of images skipped as unreadable (``--skip-corrupt``).
Those are tried again whenever the cache is used: an image repaired since joins the cache, one
still unreadable fails the run or is skipped and counted again, exactly as without a cache.
Files no ``<split>.json`` names (from a build that crashed or lost a race with another run) are
deleted once they are a day old, when the cache is next used.

Under torchrun rank 0 reads the metadata and broadcasts it, so every rank takes the same path
(build, retry or load) through the collectives.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from pathlib import Path
from typing import Any, Callable, Iterable, Sequence

import numpy as np
import torch
from numpy.lib.format import open_memmap

from oltr_bench import formats
from oltr_bench.data.lists import Batch
from oltr_bench.engine import distributed
from oltr_bench.engine.distributed import Dist
from oltr_bench.engine.inference import infer
from oltr_bench.errors import OltrError
from oltr_bench.formats.rundir import RunDir
from oltr_bench.method import MethodModel
from oltr_bench.utils.io import atomic_write_json

BATCHNORM_NOTE = (
    "cached outputs were computed once per image with the frozen backbone in eval mode (BatchNorm running "
    "statistics) and the evaluation transform (one centre crop, no augmentation); the official code keeps the "
    "frozen backbone in train mode (batch statistics, running statistics still updating) and augments every epoch"
)
_COPY_BYTES = 256 * 2**20  # rows moved per chunk when a split's files are merged
STALE_SECONDS = 24 * 3600  # unnamed cache files older than this are removed (a build takes far less)

Compute = Callable[[Sequence[int]], Iterable[tuple[np.ndarray, np.ndarray]]]


def cache_key(model: MethodModel, level: str, transform: dict[str, Any], precision: str, fingerprint: str,
              quick: dict[str, Any] | None) -> str:
    """Hash of the frozen weights, the level, the evaluation transform, the autocast precision
    (bf16 and fp32 outputs differ), the split and the ``--quick`` subset settings."""
    settings = {"format": formats.FEATURE_CACHE_VERSION, "level": level, "transform": transform, "precision": precision, "fingerprint": fingerprint,
                "quick": quick}
    h = hashlib.sha256(json.dumps(settings, sort_keys=True).encode())
    frozen = model.backbone.body if level == "map" else model.backbone
    for name, tensor in sorted(frozen.state_dict().items()):
        h.update(name.encode())
        h.update(tensor.detach().cpu().contiguous().view(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()[:20]


def list_digest(paths: Sequence[str]) -> str:
    """Identity of the image list a split's rows belong to (list positions index the rows)."""
    return hashlib.sha256("\n".join(paths).encode()).hexdigest()[:16]


class FeatureCache:
    """The cached frozen-backbone outputs of each split, computed on first use."""

    def __init__(self, path: Path, level: str, dist: Dist, token: str):
        self.path = Path(path)
        self.level = level
        self.dist = dist
        self.token = token  # same on every rank, different per run: concurrent builders never share files
        self.reused: dict[str, bool] = {}
        self._loaded: dict[str, dict[str, Any]] = {}

    def get(self, which: str, paths: Sequence[str], compute: Compute) -> dict[str, Any]:
        """``{"inputs": [N, ...] float32 array, "index": [N] list positions (ascending), "skipped": list
        positions without a row}`` of split ``which``, whose list is ``paths``.

        ``compute(positions)`` yields (outputs, list positions) batches for this rank's share of
        ``positions``, leaving out images it skips as unreadable (or raising for them). It runs
        over the whole list when the split is not cached yet, and over the positions an earlier
        build skipped when it is.
        """
        if which not in self._loaded:
            digest = list_digest(paths)
            if self.dist.is_main:
                self._remove_stale(which)
            meta = self._shared_meta(which, digest)
            if meta is None:
                self._build(which, range(len(paths)), compute, len(paths), digest, None)
            elif meta["skipped"]:
                self._build(which, meta["skipped"], compute, len(paths), digest, meta)
            self.reused[which] = meta is not None
            meta = self._shared_meta(which, digest)
            if meta is None:
                raise OltrError(f"feature cache {self.path}: {which}.json was replaced by another run while this one built it "
                                "(for another list of the split); run again")
            inputs = np.load(self.path / meta["data"], mmap_mode="r" if self.level == "map" else None)
            self._loaded[which] = {"inputs": inputs, "index": np.load(self.path / meta["index"]), "skipped": meta["skipped"]}
        return self._loaded[which]

    def _remove_stale(self, which: str) -> None:
        """Delete files of ``which`` that no ``<split>.json`` names and that are older than
        :data:`STALE_SECONDS`: left by a build that crashed or lost a race, or replaced by a retry.
        The age spares the files of a build still running in another process."""
        try:
            named = json.loads((self.path / f"{which}.json").read_text(encoding="utf-8"))
            keep = {named.get("data"), named.get("index")}
        except (OSError, json.JSONDecodeError, AttributeError):
            keep = set()
        now = time.time()
        for file in [*self.path.glob(f"{which}.*.npy"), *self.path.glob(f".{which}.*")]:
            try:
                if file.name not in keep and now - file.stat().st_mtime > STALE_SECONDS:
                    file.unlink()
            except FileNotFoundError:  # removed meanwhile by another run
                pass

    def _shared_meta(self, which: str, digest: str) -> dict[str, Any] | None:
        """Rank 0's reading of ``<split>.json`` (None: absent, unreadable or for another list), on every rank."""
        return distributed.broadcast_object(self.dist, self._read_meta(which, digest) if self.dist.is_main else None)

    def _read_meta(self, which: str, digest: str) -> dict[str, Any] | None:
        try:
            meta = json.loads((self.path / f"{which}.json").read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError):
            return None
        if not isinstance(meta, dict) or meta.get("list") != digest:
            return None
        if not all(isinstance(meta.get(k), str) and (self.path / meta[k]).is_file() for k in ("data", "index")):
            return None
        return meta

    def _part(self, which: str, rank: int, suffix: str) -> Path:
        return self.path / f".{which}.{self.token}.part{rank}-of-{self.dist.world_size}{suffix}"

    def _build(self, which: str, positions: Sequence[int], compute: Compute, n: int, digest: str,
               base: dict[str, Any] | None) -> None:
        """Compute ``positions`` (each rank a contiguous share) and merge them with ``base``'s rows."""
        self.path.mkdir(parents=True, exist_ok=True)
        per = -(-len(positions) // self.dist.world_size)
        mine = list(positions[self.dist.rank * per:(self.dist.rank + 1) * per])  # only this rank's share as a list
        out, at, found = None, 0, []
        for values, pos in compute(mine):
            if out is None:
                out = open_memmap(self._part(which, self.dist.rank, ".npy"), mode="w+", dtype=np.float32,
                                  shape=(len(mine), *values.shape[1:]))
            out[at:at + len(values)] = values
            at += len(values)
            found.append(pos)
        if out is not None:
            out.flush()
            del out
        np.save(self._part(which, self.dist.rank, ".index.npy"), np.concatenate(found) if found else np.zeros(0, np.int64))
        distributed.barrier(self.dist)
        if self.dist.is_main:
            self._merge(which, n, digest, base)
        distributed.barrier(self.dist)

    def _merge(self, which: str, n: int, digest: str, base: dict[str, Any] | None) -> None:
        world = self.dist.world_size
        sources = []
        for r in range(world):
            index = np.load(self._part(which, r, ".index.npy"))
            if len(index):
                sources.append((index, np.load(self._part(which, r, ".npy"), mmap_mode="r")))
        if base is not None and sources and base["rows"]:
            sources.insert(0, (np.load(self.path / base["index"]), np.load(self.path / base["data"], mmap_mode="r")))
        if base is None or sources:  # a retry where every image is still unreadable changes nothing
            index = np.concatenate([i for i, _ in sources]) if sources else np.zeros(0, np.int64)
            order = np.argsort(index, kind="stable")
            shape = sources[0][1].shape[1:] if sources else (0,)
            stem = f"{which}.{self.token}"
            tmp = self.path / f".{stem}.npy.tmp"
            out = open_memmap(tmp, mode="w+", dtype=np.float32, shape=(len(index), *shape))
            _copy_in_order(out, sources, order)
            out.flush()
            del out, sources
            np.save(self.path / f"{stem}.index.npy", index[order])
            os.replace(tmp, self.path / f"{stem}.npy")
            missing = np.ones(n, dtype=bool)  # a mask, not Python sets: MS1M-LT lists have millions of positions
            missing[index] = False
            skipped = np.flatnonzero(missing).tolist()
            atomic_write_json(self.path / f"{which}.json", {
                "split": which, "rows": len(index), "shape": list(shape), "level": self.level, "images": n, "list": digest,
                "skipped": skipped, "data": f"{stem}.npy", "index": f"{stem}.index.npy"})
            if base is not None:
                for key in ("data", "index"):
                    (self.path / base[key]).unlink(missing_ok=True)
        for r in range(world):
            for suffix in (".npy", ".index.npy"):
                self._part(which, r, suffix).unlink(missing_ok=True)


def _copy_in_order(out: np.ndarray, sources: list[tuple[np.ndarray, np.ndarray]], order: np.ndarray) -> None:
    """``out[k]`` = row ``order[k]`` of the sources' rows concatenated, a chunk at a time (sources may be memory-mapped)."""
    if not sources:
        return
    source = np.concatenate([np.full(len(index), s) for s, (index, _) in enumerate(sources)])
    row = np.concatenate([np.arange(len(index)) for index, _ in sources])
    step = max(1, _COPY_BYTES // max(1, int(np.prod(out.shape[1:])) * 4))
    for start in range(0, len(order), step):
        chunk = order[start:start + step]
        for s, (_, array) in enumerate(sources):
            hit = np.flatnonzero(source[chunk] == s)
            if len(hit):
                out[start + hit] = array[row[chunk[hit]]]


class CachedInputs:
    """The feature cache as a frozen-backbone run uses it: set up for the run, then the cached
    outputs of a split through the trainable rest of the model, and cached training batches."""

    def __init__(self, engine: Any, cache: FeatureCache):
        self.engine = engine
        self.cache = cache
        self.level = cache.level

    @classmethod
    def setup(cls, engine: Any) -> "CachedInputs | None":
        """The cache for ``engine``'s frozen-backbone method if the config allows and something is frozen
        (None otherwise); ``engine.feature_cache_info`` records the decision for the manifest."""
        if not engine.method.frozen_backbone:
            return None
        level = engine.model.cache_level()
        if not engine.cfg.train.feature_cache or level is None:
            reason = "train.feature_cache is false" if level else "backbone body parameters train"
            engine.feature_cache_info = {"used": False, "reason": reason,
                                         "batchnorm": "train mode for the frozen backbone, as the official code"}
            return None
        data = engine.cfg.data
        transform = {"pipeline": data.pipeline, "image_size": data.image_size, "resize": data.resize, "decode": data.decode}
        if data.image_cache:
            transform["image_cache_side"] = data.image_cache_side
        precision = "bf16" if engine.amp_dtype is not None else "fp32"
        quick = None
        if engine.quick:  # what the --quick subsets depend on
            q = engine.cfg.quick
            quick = {"train_per_class": q.train_per_class, "eval_per_class": q.eval_per_class, "open_images": q.open_images,
                     "seed": engine.cfg.seed}
        key = cache_key(engine.model, level, transform, precision, engine.split.fingerprint, quick)
        base = RunDir(engine.stage1_dir) if engine.stage1_dir is not None else engine.rundir
        token = distributed.broadcast_object(engine.dist, f"{os.getpid()}-{time.time_ns()}")
        cache = FeatureCache(base.feature_cache / key, level, engine.dist, token)
        engine.feature_cache_info = {"used": True, "level": level, "path": str(cache.path.resolve()),
                                     "dtype": "float32", "computed_in": "bf16 autocast" if engine.amp_dtype is not None else "fp32",
                                     "batchnorm": BATCHNORM_NOTE}
        return cls(engine, cache)

    def split(self, which: str) -> dict[str, Any]:
        """The cached frozen outputs of split ``which``; images an earlier build skipped as unreadable are
        read again (:meth:`FeatureCache.get`): they fail the run, are skipped and counted, or join the cache."""
        engine = self.engine
        dataset = engine.data.dataset(which, train=False)
        frozen = engine.model.backbone.feature_map if self.level == "map" else engine.model.backbone

        def compute(positions):
            engine.model.eval()
            batches = engine.data.eval_batches(dataset, positions, f"caching {which} features")
            for out, batch in infer(frozen, batches, engine.autocast):
                yield out["out"].numpy(), batch.index.numpy()

        with engine.phase("feature_cache"):
            data = self.cache.get(which, dataset.paths, compute)
        engine.feature_cache_info.setdefault("reused", {})[which] = self.cache.reused[which]
        engine.feature_cache_info.setdefault("skipped", {})[which] = len(data["skipped"])
        return data

    def outputs(self, which: str) -> dict[str, torch.Tensor]:
        """Eval-mode head outputs of split ``which`` computed from the cache (list order, with labels and index)."""
        engine = self.engine
        data = self.split(which)
        if not len(data["index"]):
            raise OltrError(f"every image of the {which} split was skipped as unreadable; nothing to evaluate")
        labels = torch.tensor(engine.data.dataset(which, train=False).labels)
        engine.model.eval()
        bs = engine.cfg.eval.batch_size

        def batches():
            for s in range(0, len(data["index"]), bs):
                x = torch.from_numpy(np.array(data["inputs"][s:s + bs])).to(engine.device)
                if engine.channels_last and x.dim() == 4:
                    x = x.contiguous(memory_format=torch.channels_last)
                yield x, None

        chunks: dict[str, list[torch.Tensor]] = {}
        for out, _ in infer(lambda x: engine.model(x, start=self.level), batches(), engine.autocast):
            for key, value in out.items():
                chunks.setdefault(key, []).append(value)
        result = {k: torch.cat(v) for k, v in chunks.items()}
        index = torch.from_numpy(data["index"]).long()
        result["labels"], result["index"] = labels[index], index
        return result

    def train_batches(self, batches: list[list[tuple[int, int]]]):
        """Training batches from the cache: (inputs, labels) of each batch's rows (with --skip-corrupt,
        images skipped as unreadable are dropped; they were counted when the cache was read)."""
        engine = self.engine
        data = self.split("train")
        dataset = engine.data.dataset("train", train=False)
        labels = np.asarray(dataset.labels)
        row_of = np.full(engine.data.num_samples("train"), -1, dtype=np.int64)
        row_of[data["index"]] = np.arange(len(data["index"]))
        skip = engine.cfg.data.skip_corrupt
        for batch in batches:
            idx = np.asarray([i for i, _ in batch], dtype=np.int64)
            rows = row_of[idx]
            if not skip and (rows < 0).any():
                missing = dataset.root / dataset.paths[int(idx[rows < 0][0])]
                raise OltrError(f"the feature cache {self.cache.path} has no row for training image {missing}; "
                                "delete that folder to rebuild it, or pass --skip-corrupt to train without the image")
            idx = idx[rows >= 0]
            rows = rows[rows >= 0]
            yield Batch(torch.from_numpy(np.asarray(data["inputs"][rows])), torch.from_numpy(labels[idx]),
                        torch.from_numpy(idx), torch.zeros(0), [])

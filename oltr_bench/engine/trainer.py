"""The engine: trains and evaluates any registered method on any split (OLTR protocol mechanics).

Protocol mechanics kept exactly (research/oltr.md §3.3):

- an epoch is ``floor(N_train / batch)`` steps whatever the sampler;
- SGD with momentum and weight decay, one parameter group per part (features, classifier) with
  its own learning rate, ``StepLR`` stepped once per epoch after the epoch's optimisation (other
  schedules of the later baselines' official code in :mod:`~oltr_bench.engine.schedule`);
- model selection on the validation split only (best val top-1, closed set); the test and open
  lists are read only for the final evaluation;
- stage-2 methods start from the stage-1 checkpoint, copying the keys that exist.

Engineering around them:

- one process or DistributedDataParallel (:mod:`~oltr_bench.engine.distributed`): ``train.batch_size``
  is the *global* batch; every rank trains on its share of the same global sample stream, with
  BatchNorm statistics over the global batch (``train.sync_bn``), so the result does not depend
  on the number of processes;
- the learning rates scale linearly with ``batch_size / reference_batch_size`` (``train.lr_scaling``);
- bf16 autocast on CUDA and fp32 on CPU (``train.precision``), channels-last memory format,
  optional ``torch.compile``;
- a checkpoint after every epoch that continues the run exactly (``--resume``);
- frozen-backbone stages train their head on cached backbone outputs (:mod:`~oltr_bench.engine.features`).
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import random
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
from tqdm import tqdm

from oltr_bench.config import config_hash, dump_yaml
from oltr_bench.data import image_cache
from oltr_bench.data.images import UndecodableItems, UnreadableImage
from oltr_bench.data.lists import Batch, ListDataset, make_loader, make_reader, raise_failures
from oltr_bench.data.samplers import EpochBatches, epoch_batches, make_stream
from oltr_bench.data.transforms import build_pipeline
from oltr_bench.engine import checkpoint, distributed, rundir, schedule
from oltr_bench.engine.distributed import Dist, pick_device
from oltr_bench.engine.features import BATCHNORM_NOTE, FeatureCache, cache_key
from oltr_bench.engine.method import DatasetInfo, Method, MethodModel
from oltr_bench.errors import OltrError
from oltr_bench.metrics.evaluate import evaluate, write_results
from oltr_bench.metrics.protocols import get_protocol
from oltr_bench.metrics.predictions import Predictions, write_predictions
from oltr_bench.models.backbones import PRETRAINED_BY_PROTOCOL, build_backbone
from oltr_bench.registry import METHODS
from oltr_bench.splits.format import SplitDir
from oltr_bench.utils.io import atomic_write_text


def seed_everything(seed: int) -> None:
    torch.manual_seed(seed)
    np.random.seed(seed % 2**32)
    random.seed(seed)


def quick_subset(labels: list[int], per_class: int, seed: int) -> list[int]:
    """The first ``per_class`` indices of each class after a seeded shuffle (for ``--quick``)."""
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(labels))
    taken: dict[int, int] = {}
    chosen = []
    for i in order:
        label = labels[int(i)]
        if taken.get(label, 0) < per_class:
            taken[label] = taken.get(label, 0) + 1
            chosen.append(int(i))
    return sorted(chosen)


POSITIVE = (("train", "batch_size"), ("train", "epochs"), ("train", "reference_batch_size"), ("data", "samples_per_class"),
            ("data", "image_size"), ("data", "resize"), ("data", "image_cache_side"), ("eval", "batch_size"))
QUICK_POSITIVE = (("quick", "train_per_class"), ("quick", "eval_per_class"), ("quick", "open_images"), ("quick", "epochs"),
                  ("quick", "max_steps"))


def autocast_dtype(choice: str, device: torch.device) -> torch.dtype | None:
    """The autocast dtype of ``train.precision`` on ``device`` (None: fp32, no autocast)."""
    if choice not in ("auto", "fp32", "bf16"):
        raise OltrError(f"train.precision {choice!r} is not known; expected auto, fp32 or bf16")
    if choice == "bf16" or (choice == "auto" and device.type == "cuda"):
        return torch.bfloat16
    return None


def check_settings(cfg: dict[str, Any], quick: bool, device: torch.device) -> None:
    """The checks of single config values: counts that must be positive, the precision, the schedule."""
    for path in POSITIVE + (QUICK_POSITIVE if quick else ()):
        value = cfg[path[0]][path[1]]
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise OltrError(f"{'.'.join(path)} must be a positive integer, found {value!r}")
    workers = cfg["data"]["workers"]
    if not isinstance(workers, int) or workers < 0:
        raise OltrError(f"data.workers must be 0 (load in the main process) or more, found {workers!r}")
    autocast_dtype(cfg["train"]["precision"], device)
    schedule.check(cfg["train"]["scheduler"])
    get_protocol(cfg["eval"]["protocol"])
    threshold = cfg["eval"]["open_threshold"]
    if not 0.0 <= float(threshold) <= 1.0:  # the engine's methods score known-ness in [0, 1] (max p, 1 - P(unknown))
        raise OltrError(f"eval.open_threshold must be in [0, 1] (τ on the known score), found {threshold!r}")


def validate_config(cfg: dict[str, Any], split: SplitDir, *, quick: bool = False,
                    device: torch.device | None = None) -> tuple[Method, MethodModel]:
    """Fail on a config this engine cannot run, before any run directory or stage-1 training exists.

    Builds what the run would build from the config alone: the data pipelines, the sampler, the
    backbone (with its weights file), the method with its ``params`` and its model, and runs the
    model once on a ``data.image_size`` input (a DME attention sized for another
    ``model.input_size`` fails here). Reads no image and no list but the split's manifest.
    Returns the method and its freshly initialised model.
    """
    device = device or torch.device("cpu")
    check_settings(cfg, quick, device)
    data = cfg["data"]
    build_pipeline(data, train=True)
    build_pipeline(data, train=False)
    backbone = build_backbone(cfg["model"])
    method = METHODS.get(cfg["method"])(cfg["params"], DatasetInfo(split.num_classes, tuple(split.train_counts), backbone.feat_dim))
    make_stream(data["sampler"] or method.sampler, [0], int(data["samples_per_class"]), 0)
    model = method.build_model(backbone).eval()
    size = int(data["image_size"])
    try:
        with torch.no_grad():
            model(torch.zeros(1, 3, size, size))
    except Exception as exc:  # noqa: BLE001 - any failure here is a model that cannot take the configured input
        raise OltrError(f"the {cfg['method']} model cannot take data.image_size={size} inputs (model.input_size="
                        f"{cfg['model']['input_size']}): {type(exc).__name__}: {exc}. Set both to the same size") from None
    return method, model


@dataclass
class Phase:
    """Wall-clock timer for the manifest's per-phase times."""

    times: dict[str, float] = field(default_factory=dict)

    @contextlib.contextmanager
    def __call__(self, name: str):
        start = time.perf_counter()
        try:
            yield
        finally:
            self.times[name] = self.times.get(name, 0.0) + time.perf_counter() - start


class Engine:
    """One run of one method on one split; also the :class:`~oltr_bench.engine.method.EngineContext`."""

    def __init__(
        self,
        cfg: dict[str, Any],
        split: SplitDir,
        run_dir: Path,
        *,
        quick: bool = False,
        stage1_dir: Path | None = None,
        progress: bool = True,
        dist: Dist | None = None,
        resume: bool = False,
        echo: Callable[[str], None] | None = None,
        allow_unsafe_checkpoints: bool = False,
    ):
        self.cfg = cfg
        self.split = split
        self.run_dir = Path(run_dir)
        self.quick = quick
        self.stage1_dir = stage1_dir
        self.dist = dist or Dist(device=pick_device())
        self.device = self.dist.device
        self.rank, self.world_size = self.dist.rank, self.dist.world_size
        self.progress = progress and self.dist.is_main
        self.resume = resume
        self.allow_unsafe_checkpoints = allow_unsafe_checkpoints
        self._echo = echo or tqdm.write
        self.phase = Phase()
        self.method_cls = METHODS.get(cfg["method"])
        check_settings(cfg, quick, self.device)
        seed_everything(int(cfg["seed"]))
        train = cfg["train"]
        self.backbone = build_backbone(cfg["model"])
        self.info = DatasetInfo(split.num_classes, tuple(split.train_counts), self.backbone.feat_dim)
        self.method: Method = self.method_cls(cfg["params"], self.info)
        self.model: MethodModel = self.method.build_model(self.backbone).to(self.device)
        self.channels_last = bool(train["channels_last"])
        if self.channels_last:
            self.model.to(memory_format=torch.channels_last)
        self.amp_dtype = autocast_dtype(train["precision"], self.device)
        if self.device.type == "cuda":
            torch.backends.cudnn.benchmark = True  # fixed input sizes: let cuDNN pick the fastest kernels
        self.sampler_kind = cfg["data"]["sampler"] or self.method.sampler
        self._subsets: dict[str, list[int]] = {}  # --quick: each split's chosen list positions, picked on first use
        self._datasets: dict[tuple[str, bool], ListDataset] = {}
        self.features: FeatureCache | None = None
        self.feature_cache_info: dict[str, Any] = {}
        self.image_caches: dict[str, str] = {}
        self.skipped: set[str] = set()
        self.warnings: list[str] = []
        self._tensorboard = None

    # -- setup -----------------------------------------------------------------------------
    def _autocast(self):
        return torch.autocast(self.device.type, dtype=self.amp_dtype or torch.bfloat16, enabled=self.amp_dtype is not None)

    def _subset(self, which: str) -> list[int] | None:
        """The list positions ``--quick`` uses of split ``which`` (None: the whole list). Picked when the
        split is first used, so a quick run, too, reads the test and open lists only for the final evaluation."""
        if not self.quick:
            return None
        if which not in self._subsets:
            q, seed = self.cfg["quick"], int(self.cfg["seed"])
            if which == "open":
                n_open = len(self.split.entries("open"))
                self._subsets[which] = sorted(np.random.default_rng(seed).permutation(n_open)[: int(q["open_images"])].tolist())
            else:
                per_class = q["train_per_class"] if which == "train" else q["eval_per_class"]
                self._subsets[which] = quick_subset(self.split.labels(which), int(per_class), seed)
        return self._subsets[which]

    def log(self, message: str) -> None:
        if self.dist.is_main:
            self._echo(message)

    def warn(self, message: str) -> None:
        self.warnings.append(message)
        self.log(f"warning: {message}")

    # -- data ------------------------------------------------------------------------------
    def num_samples(self, which: str) -> int:
        subset = self._subset(which)
        return len(subset) if subset is not None else len(self.split.entries(which))

    def dataset(self, which: str, train: bool) -> ListDataset:
        key = (which, train)
        if key not in self._datasets:
            data = self.cfg["data"]
            reader = self._image_cache_reader(which) if data["image_cache"] else None
            self._datasets[key] = ListDataset(self.split, which, build_pipeline(data, train), self._subset(which),
                                              skip_corrupt=bool(data["skip_corrupt"]), reader=reader)
        return self._datasets[key]

    def _image_cache_reader(self, which: str):
        data = self.cfg["data"]
        side = int(data["image_cache_side"])
        entries = self.split.entries(which)
        chosen = self._subset(which)
        paths = [entries[i][0] for i in (range(len(entries)) if chosen is None else chosen)]
        root = self.split.root(which)
        path = image_cache.cache_dir(Path(data["image_cache"]), self.split.dataset, which, side, self.split.fingerprint, paths)
        # Rank 0 decides: ranks that saw the cache differently would take different collectives.
        if not distributed.broadcast_object(self.dist, image_cache.is_complete(path) if self.dist.is_main else None):
            with self.phase("image_cache"):
                bar = tqdm(total=-(-len(paths) // self.world_size), desc=f"image cache {which}", unit="img", disable=not self.progress)
                skipped = image_cache.build_part(path, self.rank, self.world_size, make_reader(root, paths), len(paths), side,
                                                 workers=int(data["workers"]), skip_corrupt=bool(data["skip_corrupt"]), progress=bar.update)
                bar.close()
                self._note_skipped(skipped)
                distributed.barrier(self.dist)
                if self.dist.is_main:
                    image_cache.write_meta(path, len(paths), side, self.world_size,
                                           {"dataset": self.split.dataset, "split": which, "split_fingerprint": self.split.fingerprint})
                distributed.barrier(self.dist)
        self.image_caches[which] = {
            "path": str(path), "side": side,
            "note": f"images read pre-resized to a shorter side of at most {side} px: training crops larger than that "
                    "lose resolution before their final resize (evaluation at Resize(side) is unchanged)",
        }
        return image_cache.ImageCacheReader(path, paths, root, make_reader(root, paths))

    def _note_skipped(self, paths: list[str]) -> None:
        for path in paths:
            if path not in self.skipped and len(self.skipped) < 20:
                self.log(f"warning: skipping unreadable image {path}")
            self.skipped.add(path)

    def _inputs(self, batch: Batch, dataset: ListDataset | None) -> tuple[torch.Tensor, torch.Tensor] | None:
        """Model input and labels on the device (``dataset`` None: cached inputs, used as they are);
        None when every image of the batch was skipped."""
        raise_failures(batch.skipped)
        self._note_skipped([item.path for item in batch.skipped])
        while True:
            if len(batch.y) == 0:
                return None
            if dataset is None:
                x = batch.x.to(self.device, non_blocking=True)
                break
            try:
                x = dataset.pipeline.batch(batch.x, batch.aux, self.device)
                break
            except UndecodableItems as exc:
                bad = {pos for pos, _ in exc.items}
                if not dataset.skip_corrupt:
                    pos, reason = exc.items[0]
                    raise UnreadableImage(str(dataset.root / dataset.paths[int(batch.index[pos])]), reason) from None
                self._note_skipped([str(dataset.root / dataset.paths[int(batch.index[p])]) for p in bad])
                keep = [i for i in range(len(batch.y)) if i not in bad]
                batch = Batch([batch.x[i] for i in keep], batch.y[keep], batch.index[keep], [batch.aux[i] for i in keep], [])
        if self.channels_last and x.dim() == 4:
            x = x.contiguous(memory_format=torch.channels_last)
        return x, batch.y.to(self.device, non_blocking=True)

    def _loader(self, dataset: ListDataset, batches, persistent: bool = False) -> torch.utils.data.DataLoader:
        return make_loader(dataset, batches, workers=int(self.cfg["data"]["workers"]), pin_memory=self.device.type == "cuda",
                           persistent=persistent)

    # -- EngineContext -----------------------------------------------------------------------
    @torch.no_grad()
    def forward_dataset(self, dataset: ListDataset, desc: str) -> dict[str, torch.Tensor]:
        """Head outputs of the model in eval mode over ``dataset``: this rank's contiguous share, gathered (CPU, list order)."""
        self.model.eval()
        n, bs = len(dataset), int(self.cfg["eval"]["batch_size"])
        per = -(-n // self.world_size)
        mine = list(range(self.rank * per, min(n, (self.rank + 1) * per)))
        batches = [[(i, 0) for i in mine[s:s + bs]] for s in range(0, len(mine), bs)]
        chunks: dict[str, list[torch.Tensor]] = {}
        for batch in tqdm(self._loader(dataset, batches), desc=desc, leave=False, disable=not self.progress, unit="batch"):
            prepared = self._inputs(batch, dataset)
            if prepared is None:
                continue
            with self._autocast():
                out = self.model(prepared[0])
            for key, value in out.items():
                chunks.setdefault(key, []).append(value.detach().float().cpu())
            chunks.setdefault("labels", []).append(batch.y)
            chunks.setdefault("index", []).append(batch.index)
        return self._gather(chunks)

    def _gather(self, chunks: dict[str, list[torch.Tensor]]) -> dict[str, torch.Tensor]:
        local = {k: torch.cat(v) for k, v in chunks.items()}
        if not self.dist.enabled:
            if not local:
                raise OltrError("every image of an evaluation split was skipped as unreadable; nothing to evaluate")
            return local
        # Ranks without rows still take part in the gathers, with rank 0's keys and shapes.
        template = distributed.broadcast_object(self.dist, {k: (tuple(v.shape[1:]), v.dtype) for k, v in local.items()})
        return {k: distributed.gather_rows(self.dist, local.get(k, torch.zeros((0, *shape), dtype=dtype)))
                for k, (shape, dtype) in template.items()}

    def outputs(self, split: str) -> dict[str, torch.Tensor]:
        if split not in ("train", "val"):
            raise OltrError(f"methods may only look at the train and val splits, not {split!r}")
        return self.split_outputs(split)

    def split_outputs(self, which: str) -> dict[str, torch.Tensor]:
        """Eval-mode head outputs over a whole split (from the feature cache when it is on)."""
        if self.features is not None:
            return self._cached_outputs(which)
        return self.forward_dataset(self.dataset(which, train=False), which)

    # -- feature cache -----------------------------------------------------------------------
    def _setup_feature_cache(self) -> None:
        """Turn the feature cache on for a frozen-backbone method if the config allows and something is frozen."""
        if not self.method.frozen_backbone:
            return
        level = self.model.cache_level()
        if not self.cfg["train"]["feature_cache"] or level is None:
            reason = "train.feature_cache is false" if level else "backbone body parameters train"
            self.feature_cache_info = {"used": False, "reason": reason,
                                       "batchnorm": "train mode for the frozen backbone, as the official code"}
            return
        data = self.cfg["data"]
        transform = {k: data[k] for k in ("pipeline", "image_size", "resize", "decode")}
        if data["image_cache"]:
            transform["image_cache_side"] = data["image_cache_side"]
        precision = "bf16" if self.amp_dtype is not None else "fp32"
        quick = None
        if self.quick:  # what the --quick subsets depend on
            quick = {k: self.cfg["quick"][k] for k in ("train_per_class", "eval_per_class", "open_images")}
            quick["seed"] = int(self.cfg["seed"])
        key = cache_key(self.model, level, transform, precision, self.split.fingerprint, quick)
        base = self.stage1_dir if self.stage1_dir is not None else self.run_dir
        token = distributed.broadcast_object(self.dist, f"{os.getpid()}-{time.time_ns()}")
        self.features = FeatureCache(base / "feature_cache" / key, level, self.dist, token)
        self.feature_cache_info = {"used": True, "level": level, "path": str(self.features.path.resolve()),
                                   "dtype": "float32", "computed_in": "bf16 autocast" if self.amp_dtype is not None else "fp32",
                                   "batchnorm": BATCHNORM_NOTE}

    def _cache(self, which: str) -> dict[str, Any]:
        """The cached outputs of split ``which``; images an earlier build skipped as unreadable are read
        again (:meth:`FeatureCache.get`): they fail the run, are skipped and counted, or join the cache."""
        dataset = self.dataset(which, train=False)

        @torch.no_grad()
        def compute(positions):
            self.model.eval()
            bs = int(self.cfg["eval"]["batch_size"])
            batches = [[(i, 0) for i in positions[s:s + bs]] for s in range(0, len(positions), bs)]
            frozen = self.model.backbone.feature_map if self.features.level == "map" else self.model.backbone
            for batch in tqdm(self._loader(dataset, batches), desc=f"caching {which} features", leave=False,
                              disable=not self.progress, unit="batch"):
                prepared = self._inputs(batch, dataset)
                if prepared is not None:
                    with self._autocast():
                        out = frozen(prepared[0])
                    yield out.float().cpu().numpy(), batch.index.numpy()

        with self.phase("feature_cache"):
            data = self.features.get(which, dataset.paths, compute)
        self.feature_cache_info.setdefault("reused", {})[which] = self.features.reused[which]
        self.feature_cache_info.setdefault("skipped", {})[which] = len(data["skipped"])
        return data

    @torch.no_grad()
    def _cached_outputs(self, which: str) -> dict[str, torch.Tensor]:
        data = self._cache(which)
        if not len(data["index"]):
            raise OltrError(f"every image of the {which} split was skipped as unreadable; nothing to evaluate")
        labels = torch.tensor(self.dataset(which, train=False).labels)
        self.model.eval()
        bs = int(self.cfg["eval"]["batch_size"])
        chunks: dict[str, list[torch.Tensor]] = {}
        for s in range(0, len(data["index"]), bs):
            x = torch.from_numpy(np.array(data["inputs"][s:s + bs])).to(self.device)
            if self.channels_last and x.dim() == 4:
                x = x.contiguous(memory_format=torch.channels_last)
            with self._autocast():
                out = self.model(x, start=self.features.level)
            for key, value in out.items():
                chunks.setdefault(key, []).append(value.detach().float().cpu())
        result = {k: torch.cat(v) for k, v in chunks.items()}
        index = torch.from_numpy(data["index"]).long()
        result["labels"], result["index"] = labels[index], index
        return result

    def _cached_train_batches(self, batches: list[list[tuple[int, int]]]):
        """Training batches from the cache: (inputs, labels) of each batch's rows (with --skip-corrupt,
        images skipped as unreadable are dropped; they were counted when the cache was read)."""
        data = self._cache("train")
        dataset = self.dataset("train", train=False)
        labels = np.asarray(dataset.labels)
        row_of = np.full(self.num_samples("train"), -1, dtype=np.int64)
        row_of[data["index"]] = np.arange(len(data["index"]))
        skip = bool(self.cfg["data"]["skip_corrupt"])
        for batch in batches:
            idx = np.asarray([i for i, _ in batch], dtype=np.int64)
            rows = row_of[idx]
            if not skip and (rows < 0).any():
                missing = dataset.root / dataset.paths[int(idx[rows < 0][0])]
                raise OltrError(f"the feature cache {self.features.path} has no row for training image {missing}; "
                                "delete that folder to rebuild it, or pass --skip-corrupt to train without the image")
            idx = idx[rows >= 0]
            rows = rows[rows >= 0]
            yield Batch(torch.from_numpy(np.asarray(data["inputs"][rows])), torch.from_numpy(labels[idx]),
                        torch.from_numpy(idx), torch.zeros(0), [])

    # -- training ----------------------------------------------------------------------------
    def plan(self) -> dict[str, int]:
        """Epochs, steps per epoch and the global and per-process batch of this run."""
        train = self.cfg["train"]
        n, batch, epochs, ws = self.num_samples("train"), int(train["batch_size"]), int(train["epochs"]), self.world_size
        if self.quick:
            epochs = min(epochs, int(self.cfg["quick"]["epochs"]))
            batch = min(batch, max(ws, n // 2))
            batch -= batch % ws
            steps = min(max(1, n // batch), int(self.cfg["quick"]["max_steps"]))
        else:
            steps = n // batch
        if batch % ws:
            raise OltrError(f"train.batch_size {batch} (the global batch) is not a multiple of the {ws} processes; "
                            f"choose a multiple of {ws}")
        if steps < 1:
            raise OltrError(f"the train list has {n} images, fewer than one batch of {batch}; lower train.batch_size")
        return {"epochs": epochs, "steps_per_epoch": steps, "batch_size": batch, "per_process_batch": batch // ws}

    def effective_lr(self, batch: int) -> tuple[dict[str, float], float]:
        """Learning rates for a global batch: linear scaling by ``batch / reference_batch_size`` unless turned off."""
        train = self.cfg["train"]
        reference = int(train["reference_batch_size"])
        factor = batch / reference if train["lr_scaling"] else 1.0
        return {k: float(v) * factor for k, v in train["lr"].items()}, factor

    def _optimizers(self, lr: dict[str, float], factor: float, epochs: int):
        train = self.cfg["train"]
        groups = self.method.param_groups(self.model, lr)
        optimizers: list[torch.optim.Optimizer] = []
        if groups:
            optimizers.append(torch.optim.SGD(groups, lr=lr["classifier"], momentum=float(train["momentum"]),
                                              weight_decay=float(train["weight_decay"])))
        for extra in self.method.extra_optimizers(self.model):
            for group in extra.param_groups:
                group["lr"] *= factor
            optimizers.append(extra)
        optimised = {id(p) for opt in optimizers for g in opt.param_groups for p in g["params"]}
        for p in self.model.parameters():
            if id(p) not in optimised:
                p.requires_grad_(False)  # what no optimiser updates is frozen (no gradients computed)
        schedulers = [schedule.build(opt, train["scheduler"], epochs) for opt in optimizers]
        return optimizers, schedulers

    def _network(self) -> torch.nn.Module:
        """The module the training steps call: the model, DDP-wrapped and compiled as configured."""
        train = self.cfg["train"]
        net: torch.nn.Module = self.model
        if self.dist.enabled:
            from torch.nn.parallel import DistributedDataParallel

            net = DistributedDataParallel(self.model, device_ids=[self.device.index] if self.device.type == "cuda" else None,
                                          find_unused_parameters=bool(train["ddp_find_unused"]))
        if train["compile"]:
            net = torch.compile(net)
        return net

    def _sync_method_state(self) -> None:
        """Every rank takes rank 0's model parameters, buffers and method state (after hooks)."""
        if not self.dist.enabled:
            return
        distributed.broadcast_state(self.dist, self.model)
        state = distributed.broadcast_object(self.dist, self.method.state_dict())
        if not self.dist.is_main:
            self.method.load_state_dict(state)

    def _write_log(self, record: dict[str, Any]) -> None:
        if not self.dist.is_main:
            return
        with open(self.run_dir / "train_log.jsonl", "a", encoding="utf-8") as fh:
            fh.write(json.dumps(record) + "\n")
        if self._tensorboard is not None:
            step = record.get("global_step", 0)
            for key in ("loss", "train_loss", "val_top1", "images_per_s"):
                if key in record:
                    self._tensorboard.add_scalar(f"{record['event']}/{key}", record[key], step)
            for i, lr in enumerate(record.get("lr", [])):
                self._tensorboard.add_scalar(f"lr/group{i}", lr, step)

    def _save_checkpoint(self, name: str, payload: dict[str, Any]) -> None:
        if self.dist.is_main:
            checkpoint.save(self.run_dir / "checkpoints" / name, {"model": checkpoint.cpu_state(self.model.state_dict()),
                                                                 "method": self.method.state_dict(), **payload})

    def _load_model_state(self, path: Path) -> dict[str, Any]:
        state = checkpoint.load(path, self.device, allow_unsafe=self.allow_unsafe_checkpoints)
        self.model.load_state_dict(state["model"])
        self.method.load_state_dict(state.get("method", {}))
        return state

    def init_from_stage1(self) -> dict[str, Any] | None:
        """Copy the stage-1 checkpoint into the model; the manifest's summary of what was copied."""
        if self.stage1_dir is None:
            return None
        state = checkpoint.load(self.stage1_dir / "checkpoints" / "best.pt", allow_unsafe=self.allow_unsafe_checkpoints)
        report = self.method.load_stage1(self.model, state["model"])
        return {"copied": len(report["copied"]), "fresh": report["fresh"], "ignored": report["ignored"]}

    def val_top1(self) -> float:
        out = self.split_outputs("val")
        correct = int((out["logits"].argmax(1) == out["labels"]).sum())
        return correct / len(out["labels"]) if len(out["labels"]) else 0.0  # exact, as the metrics' top1

    def train(self, plan: dict[str, int], lr: dict[str, float], factor: float) -> dict[str, Any]:
        epochs, steps, batch = plan["epochs"], plan["steps_per_epoch"], plan["batch_size"]
        seed = int(self.cfg["seed"])
        # The configured length, also in --quick: a quick run trains the first epochs of the real schedule.
        optimizers, schedulers = self._optimizers(lr, factor, int(self.cfg["train"]["epochs"]))
        self._setup_feature_cache()
        if self.dist.enabled and self.cfg["train"]["sync_bn"]:
            distributed.convert_sync_batchnorm(self.model, self.device)
        train_set = self.dataset("train", train=True)
        stream = make_stream(self.sampler_kind, train_set.labels, int(self.cfg["data"]["samples_per_class"]), seed)
        best, start_epoch = {"epoch": 0, "val_top1": -math.inf}, 0
        last = self.run_dir / "checkpoints" / "last.pt"
        resume_state = checkpoint.load(last, allow_unsafe=self.allow_unsafe_checkpoints) if self.resume and last.is_file() else None
        if resume_state is None:
            if self.resume and self.dist.is_main:
                rundir.truncate_log(self.run_dir / "train_log.jsonl", 0)  # crashed during its first epoch: start over
            with self.phase("train_start_hook"):
                self.method.on_train_start(self)
            self._sync_method_state()
        else:
            self.model.load_state_dict(resume_state["model"])
            self.method.load_state_dict(resume_state["method"])
            for opt, state in zip(optimizers, resume_state["optimizers"]):
                opt.load_state_dict(state)
            for sched, state in zip(schedulers, resume_state["schedulers"]):
                sched.load_state_dict(state)
            stream.load_state_dict(resume_state["stream"])
            best, start_epoch = resume_state["best"], int(resume_state["epoch"])
            self.skipped.update(resume_state.get("skipped", []))
            if self.dist.is_main:
                rundir.truncate_log(self.run_dir / "train_log.jsonl", start_epoch)
            self.log(f"resuming after epoch {start_epoch} of {epochs} from {last}")
            checkpoint.restore_rng(resume_state["rng"])
        net = self._network()
        holder = EpochBatches()
        loader = None if self.features is not None else self._loader(train_set, holder, persistent=True)
        start_mode = self.features.level if self.features is not None else "images"
        for epoch in range(start_epoch, epochs):
            self.method.on_epoch_start(epoch)
            holder.batches = epoch_batches(stream, steps, batch, seed, self.rank, self.world_size)
            self.model.train()
            batches = loader if loader is not None else self._cached_train_batches(holder.batches)
            with self.phase("train"):
                train_loss, images_per_s = self._train_epoch(net, batches, train_set, optimizers, epoch, epochs, steps, start_mode)
            used_lr = [g["lr"] for opt in optimizers for g in opt.param_groups]
            for sched in schedulers:
                sched.step()
            with self.phase("validate"):
                val_top1 = self.val_top1()
            record = {"event": "epoch", "epoch": epoch + 1, "global_step": (epoch + 1) * steps, "steps": steps,
                      "train_loss": train_loss, "val_top1": val_top1,
                      "lr": used_lr, "images_per_s": images_per_s}
            self._write_log(record)
            if val_top1 > best["val_top1"]:
                best = {"epoch": epoch + 1, "val_top1": val_top1}
                self._save_checkpoint("best.pt", {"epoch": epoch + 1, "val_top1": val_top1})
            self._save_checkpoint("last.pt", {
                "epoch": epoch + 1, "val_top1": val_top1, "best": best, "config_hash": config_hash(self.cfg),
                "optimizers": [o.state_dict() for o in optimizers], "schedulers": [s.state_dict() for s in schedulers],
                "stream": stream.state_dict(), "rng": checkpoint.rng_state(), "skipped": sorted(self.skipped),
            })
            self.log(f"epoch {epoch + 1}/{epochs}: loss {train_loss:.4f}, val top-1 {val_top1:.4f}")
        distributed.barrier(self.dist)  # best.pt is complete before any rank reads it
        return {**plan, **{f"best_{k}": v for k, v in best.items()}}

    def _train_epoch(self, net, batches, dataset: ListDataset, optimizers, epoch: int, epochs: int, steps: int,
                     start_mode: str) -> tuple[float, float]:
        # The loss stays on the device between checks: reading it every step would make the host
        # wait for the GPU each step. Finiteness, the progress bar and step records are checked
        # every ``log.every_steps`` steps (every 50 when step records are off) and at the end.
        log_every = int(self.cfg["log"]["every_steps"])
        check_every = log_every or 50
        bar = tqdm(total=steps, desc=f"epoch {epoch + 1}/{epochs}", disable=not self.progress, unit="step", dynamic_ncols=True)
        started, seen = time.perf_counter(), 0
        loss_sum = torch.zeros((), dtype=torch.float64, device=self.device)
        finite = torch.ones((), dtype=torch.bool, device=self.device)
        last_check = 0
        for step, batch in enumerate(batches):
            prepared = self._inputs(batch, dataset if start_mode == "images" else None)
            n = 0 if prepared is None else len(prepared[1])
            if self.cfg["data"]["skip_corrupt"] and distributed.all_min_int(self.dist, n) == 0:
                bar.update(1)
                continue  # a rank has no image left in this batch: every rank skips the step
            x, y = prepared
            with self._autocast():
                outputs = net(x, y) if start_mode == "images" else net(x, y, start=start_mode)
                loss, parts = self.method.loss(outputs, y, self.model)
            loss_value = loss.detach()
            finite &= torch.isfinite(loss_value)
            for opt in optimizers:
                opt.zero_grad(set_to_none=True)
            loss.backward()
            for opt in optimizers:
                opt.step()
            seen += n
            loss_sum += loss_value.double() * n
            bar.update(1)
            if (step + 1) % check_every and step + 1 != steps:
                continue
            value = float(loss_value)
            if distributed.all_sum_int(self.dist, int(not bool(finite))):
                raise OltrError(f"the {self.cfg['method']} loss became non-finite (rank {self.rank}) at epoch {epoch + 1}, "
                                f"between steps {last_check + 1} and {step + 1}; lower the learning rate")
            last_check = step + 1
            elapsed = max(time.perf_counter() - started, 1e-9)
            bar.set_postfix(loss=f"{value:.3f}", img_s=f"{seen * self.world_size / elapsed:.0f}")
            if log_every and (step + 1) % log_every == 0:
                (global_loss,) = distributed.all_mean(self.dist, [value])
                self._write_log({"event": "step", "epoch": epoch + 1, "step": step + 1, "global_step": epoch * steps + step + 1,
                                 "loss": global_loss, **{k: float(v) for k, v in parts.items() if k != "loss"},
                                 "lr": [g["lr"] for opt in optimizers for g in opt.param_groups],
                                 "images_per_s": seen * self.world_size / elapsed})
        bar.close()
        if distributed.all_sum_int(self.dist, int(not bool(finite))):  # steps after the last check were skipped ones
            raise OltrError(f"the {self.cfg['method']} loss became non-finite (rank {self.rank}) at epoch {epoch + 1}, "
                            f"after step {last_check}; lower the learning rate")
        loss_total, seen_total = distributed.all_mean(self.dist, [float(loss_sum), float(seen)])
        return loss_total / max(seen_total, 1e-9), seen * self.world_size / max(time.perf_counter() - started, 1e-9)

    # -- prediction --------------------------------------------------------------------------
    def predict(self, which: str) -> Predictions:
        parts = ["val"] if which == "val" else [s for s in ("test", "open") if self.split.has(s)]
        ids, chunks = [], []
        for part in parts:
            dataset = self.dataset(part, train=False)
            out = self.split_outputs(part)
            chunks.append(self.method.predict(out))
            ids += [dataset.paths[i] for i in out["index"].tolist()]
        merged = {k: torch.cat([c[k] for c in chunks]).numpy() for k in chunks[0]}
        scores_key = "probs" if "probs" in merged else "logits"
        return Predictions(
            ids=np.asarray(ids, dtype=np.str_),
            scores=merged[scores_key],
            scores_are_probs=scores_key == "probs",
            split_fingerprint=self.split.fingerprint,
            pred=merged.get("pred"),
            known_score=merged.get("known_score"),
            meta={"method": self.cfg["method"], "config_hash": config_hash(self.cfg), "run_id": self.run_dir.name, "quick": self.quick},
        )

    def save_predictions(self, which: str, preds: Predictions) -> Path:
        path = self.run_dir / "predictions" / f"{which}.npz"
        write_predictions(
            path,
            ids=preds.ids,
            split_fingerprint=preds.split_fingerprint,
            logits=None if preds.scores_are_probs else preds.scores,
            probs=preds.scores if preds.scores_are_probs else None,
            pred=preds.pred,
            known_score=preds.known_score,
            meta=preds.meta,
        )
        return path

    # -- the whole run -----------------------------------------------------------------------
    def _manifest(self, plan: dict[str, int] | None, lr: dict[str, float], factor: float) -> dict[str, Any]:
        cfg, train = self.cfg, self.cfg["train"]
        return {
            "format": rundir.RUN_FORMAT,
            "status": "running",
            "method": cfg["method"],
            "dataset": self.split.dataset,
            "split_dir": str(self.split.path.resolve()),
            "split_fingerprint": self.split.fingerprint,
            "config_hash": config_hash(cfg),
            "quick": self.quick,
            "stage": self.method.stage,
            "stage1_run": str(self.stage1_dir.resolve()) if self.stage1_dir else None,
            "git_sha": rundir.git_sha(),
            "versions": rundir.package_versions(),
            "device": rundir.device_info(self.device),
            "world_size": self.world_size,
            "distributed_backend": self.dist.backend,
            "batch_size": plan["batch_size"] if plan else int(train["batch_size"]),
            "per_process_batch_size": plan["per_process_batch"] if plan else None,
            "reference_batch_size": int(train["reference_batch_size"]),
            "lr_scaling": bool(train["lr_scaling"]),
            "lr_scale_factor": factor,
            "configured_lr": {k: float(v) for k, v in train["lr"].items()},
            "effective_lr": lr,
            "precision": "bf16 autocast" if self.amp_dtype is not None else "fp32",
            "channels_last": self.channels_last,
            "compile": bool(train["compile"]),
            "sync_bn": bool(train["sync_bn"]) and self.dist.enabled,
            "sampler": self.sampler_kind,
            "seeds": {"train": int(cfg["seed"]), "split": self.split.manifest.get("source", {}).get("seed")},
            "data": {"pipeline": cfg["data"]["pipeline"], "decode": cfg["data"]["decode"], "image_cache": cfg["data"]["image_cache"],
                     "skip_corrupt": bool(cfg["data"]["skip_corrupt"])},
            "model": rundir.model_cost(self.model, int(cfg["data"]["image_size"]), self.device),  # the size the network sees
            "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        }

    def _open_tensorboard(self) -> None:
        if not (self.cfg["log"]["tensorboard"] and self.dist.is_main):
            return
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError:
            raise OltrError("log.tensorboard (--tensorboard) needs the tensorboard package: pip install tensorboard") from None
        self._tensorboard = SummaryWriter(str(self.run_dir / "tensorboard"))

    def run(self) -> dict[str, Any] | None:
        """Train (or fit), predict and evaluate; rank 0 returns the results (other ranks None)."""
        cfg, main = self.cfg, self.dist.is_main
        plan = self.plan() if self.method.trains else None
        lr, factor = self.effective_lr(plan["batch_size"] if plan else int(cfg["train"]["batch_size"]))
        if plan and not cfg["train"]["lr_scaling"] and plan["batch_size"] != int(cfg["train"]["reference_batch_size"]):
            self.warn(f"learning rates kept at {cfg['train']['lr']} for a global batch of {plan['batch_size']} although they "
                      f"are set for {cfg['train']['reference_batch_size']} (lr scaling is off)")
        model_cfg = cfg["model"]
        if self.method.stage == 1 and not model_cfg["weights"] and model_cfg["backbone"] in PRETRAINED_BY_PROTOCOL:
            self.warn(f"{model_cfg['backbone']} starts from random weights: {PRETRAINED_BY_PROTOCOL[model_cfg['backbone']]}; "
                      "name a local weights file with --set model.weights=PATH")
        manifest = self._manifest(plan, lr, factor)
        previous = rundir.read_manifest(self.run_dir) if self.resume else None
        if previous:
            if not rundir.same_config(self.run_dir, cfg):
                raise OltrError(f"cannot resume {self.run_dir}: it was started with another config "
                                f"(hash {previous.get('config_hash')}, now {manifest['config_hash']}); only "
                                f"{', '.join('.'.join(k) for k in rundir.NEUTRAL_KEYS)} may change on resume")
            manifest["started"] = previous.get("started", manifest["started"])
            manifest["resumed"] = previous.get("resumed", []) + [{"at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
                                                                   "previous_status": previous.get("status")}]
            self.phase.times = {k: float(v) for k, v in previous.get("phase_seconds", {}).items()}
        if main:
            atomic_write_text(self.run_dir / "config.yaml", dump_yaml(cfg))
            (self.run_dir / "results.json").unlink(missing_ok=True)
            rundir.write_manifest(self.run_dir, manifest)
        started = time.perf_counter()
        try:
            self._open_tensorboard()
            with self.phase("init"):
                manifest["stage1_init"] = self.init_from_stage1()
            best_info: dict[str, Any] = {"epoch": 0}
            if self.method.trains:
                manifest["training"] = self.train(plan, lr, factor)
                best = self._load_model_state(self.run_dir / "checkpoints" / "best.pt")
                best_info = {"epoch": best["epoch"], "val_top1": best["val_top1"]}
            elif self.stage1_dir is None:
                raise OltrError(f"method {cfg['method']!r} trains nothing and needs a stage-1 run to start from")
            else:
                self.model.requires_grad_(False)
                self._setup_feature_cache()
            with self.phase("fit"):
                self.method.fit(self)
            self._sync_method_state()
            self._save_checkpoint("best.pt", best_info)  # the final model, with the state fit() produced
            with self.phase("predict"):
                val_preds = self.predict("val")
                test_preds = self.predict("test")
            for paths in distributed.all_gather_object(self.dist, sorted(self.skipped)):
                self.skipped.update(paths)  # every rank's unreadable images, for the manifest and `partial`
            results = None
            if main:
                self.save_predictions("val", val_preds)
                self.save_predictions("test", test_preds)
                with self.phase("evaluate"):
                    ev = cfg["eval"]
                    partial = self.quick or bool(self.skipped)
                    common = {"protocol": ev["protocol"], "threshold": float(ev["open_threshold"]), "method": cfg["method"], "partial": partial}
                    val_results = evaluate(val_preds, self.split, which="val", **common)
                    results = evaluate(test_preds, self.split, which="test", provenance={"run_dir": str(self.run_dir.resolve())}, **common)
                    results["val_metrics"] = val_results["metrics"]
        except BaseException as exc:
            if main:
                manifest.update(self._closing(started), status="failed", error=f"{type(exc).__name__}: {exc}")
                rundir.write_manifest(self.run_dir, manifest)
            raise
        finally:
            if self._tensorboard is not None:
                self._tensorboard.close()
        if main:
            manifest.update(self._closing(started), status="complete", finished=time.strftime("%Y-%m-%dT%H:%M:%S%z"))
            rundir.write_manifest(self.run_dir, manifest)
            write_results(self.run_dir / "results.json", results)  # last: its presence means complete
        distributed.barrier(self.dist)
        return results

    def _closing(self, started: float) -> dict[str, Any]:
        """Manifest entries known at the end of an attempt (successful or not)."""
        skipped = sorted(self.skipped)
        return {
            "phase_seconds": self.phase.times,
            "wall_seconds": sum(self.phase.times.values()),
            "attempt_seconds": time.perf_counter() - started,
            "feature_cache": self.feature_cache_info or None,
            "image_cache": self.image_caches or None,
            "unreadable_images": {"count": len(skipped), "paths": skipped[:100]},
            "warnings": self.warnings,
        }

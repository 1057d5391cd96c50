"""Embeddings from a trained run (``oltr-bench embed``; SPEC.md §6).

The run's final model (``checkpoints/best.pt``, with the method's state) is rebuilt from its
config and split, and each image of the probe and distractor lists goes through the engine's one
inference loop (:func:`~oltr_bench.engine.inference.infer`) with the run's evaluation transform
and autocast (AMP where the run used it). The embedding is the method's own
(:meth:`~oltr_bench.method.Method.embedding`: DME's meta-embedding) or, with ``layer="penultimate"``,
the features the head works on; its name goes into ``meta``.

Resumable: the lists are cut into chunks (``chunk`` images each) written as ``.npy`` files to
``<out>.parts/`` as they finish; a rerun with the same run, lists and layer skips the chunks
already there. Under torchrun each rank embeds every world_size-th chunk and rank 0 assembles the
file. The parts folder is removed once the embeddings file is written.
"""

from __future__ import annotations

import hashlib
import json
import logging
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm import tqdm

from oltr_bench.config.schema import RunConfig
from oltr_bench.data.lists import ListDataset, guarded, make_loader, raise_failures
from oltr_bench.data.transforms import build_pipeline
from oltr_bench.engine import checkpoint, distributed
from oltr_bench.engine.build import autocast_dtype, build_method
from oltr_bench.engine.distributed import Dist
from oltr_bench.engine.inference import infer
from oltr_bench.errors import OltrError
from oltr_bench.formats import megaface
from oltr_bench.formats.rundir import RunDir
from oltr_bench.metrics.embeddings import write_embeddings
from oltr_bench.splits.faces import FaceLists
from oltr_bench.splits.locate import find_split
from oltr_bench.utils.io import atomic_open, atomic_write_json

log = logging.getLogger(__name__)

LAYERS = ("auto", "penultimate")
CHUNK = 8192


class _Lists:
    """The two lines a :class:`ListDataset` asks of a split, for lists that are no split's."""

    def __init__(self, lists: FaceLists):
        self._entries = {"probe": [(p, 0) for p in lists.probes], "distractor": [(p, 0) for p in lists.distractors]}
        self._roots = {"probe": lists.probe_root, "distractor": lists.distractor_root}

    def entries(self, which: str) -> list[tuple[str, int]]:
        return self._entries[which]

    def root(self, which: str) -> Path:
        return Path(self._roots[which])


def load_run(run_dir: Path, device: torch.device, allow_unsafe: bool = False):
    """The run's config, split, method and final model (eval mode, on ``device``)."""
    rd = RunDir(run_dir)
    config = rd.read_config()
    manifest = rd.read_manifest()
    if config is None or manifest is None:
        raise OltrError(f"{run_dir}: no run config or manifest; expected a run directory written by oltr-bench run")
    if not rd.checkpoint("best").is_file():
        raise OltrError(f"{rd.checkpoint('best')}: missing; expected a finished run (its final model is checkpoints/best.pt)")
    cfg = RunConfig.from_dict(config, origin=str(rd.config_file))
    split = find_split(manifest.get("split_dir") or cfg.dataset)
    method, model = build_method(cfg, split)
    state = checkpoint.load(rd.checkpoint("best"), "cpu", allow_unsafe=allow_unsafe)
    model.load_state_dict(state["model"])
    method.load_state_dict(state.get("method", {}))
    return cfg, split, method, model.to(device).eval(), manifest


def embed_run(run_dir: Path, lists: FaceLists, out: Path, *, layer: str = "auto", dist: Dist | None = None,
              batch_size: int | None = None, chunk: int = CHUNK, devkit_dir: Path | None = None, progress: bool = True,
              allow_unsafe_checkpoints: bool = False) -> Path | None:
    """Write the embeddings file ``out`` of ``lists`` from the run; rank 0 returns its path."""
    if layer not in LAYERS:
        raise OltrError(f"--layer {layer!r}: expected one of {', '.join(LAYERS)}")
    dist = dist or Dist()
    cfg, split, method, model, manifest = load_run(Path(run_dir), dist.device, allow_unsafe_checkpoints)
    name = method.embedding_name if layer == "auto" else "penultimate"
    amp = autocast_dtype(cfg.train.precision, dist.device)
    pipeline = build_pipeline(cfg.data, train=False)
    source = _Lists(lists)
    plan = {"run": str(Path(run_dir).resolve()), "layer": name, "chunk": chunk,
            "lists": hashlib.sha256(json.dumps([lists.probes, lists.distractors]).encode()).hexdigest()}
    parts = out.parent / (out.name + ".parts")
    if dist.is_main:
        parts.mkdir(parents=True, exist_ok=True)
        plan_file = parts / "plan.json"
        if plan_file.exists() and json.loads(plan_file.read_text()) != plan:
            raise OltrError(f"{parts}: holds the parts of another embedding (other run, lists or layer); remove it or choose "
                            "another --out")
        atomic_write_json(plan_file, plan)
    distributed.barrier(dist)
    bs = batch_size or cfg.eval.batch_size
    work = [(kind, k) for kind, n in (("probe", len(lists.probes)), ("distractor", len(lists.distractors)))
            for k in range(-(-n // chunk))]
    mine = [w for i, w in enumerate(work) if i % dist.world_size == dist.rank and not (parts / f"{w[0]}-{w[1]:06d}.npy").exists()]
    total = sum(min(chunk, len(source.entries(kind)) - k * chunk) for kind, k in mine)
    bar = tqdm(total=total, desc="embedding", unit="img", disable=not (progress and dist.is_main))

    def forward(x: torch.Tensor) -> dict[str, torch.Tensor]:
        return {"embedding": method.embedding(model(x), model)}

    autocast = lambda: torch.autocast(dist.device.type, dtype=amp or torch.bfloat16, enabled=amp is not None)  # noqa: E731
    for kind, k in mine:
        n = len(source.entries(kind))
        positions = list(range(k * chunk, min(n, (k + 1) * chunk)))
        dataset = ListDataset(source, kind, pipeline, positions)  # type: ignore[arg-type]
        batches = [[(i, 0) for i in range(s, min(len(positions), s + bs))] for s in range(0, len(positions), bs)]

        def inputs():
            for batch in guarded(make_loader(dataset, batches, workers=cfg.data.workers, pin_memory=dist.device.type == "cuda")):
                raise_failures(batch.skipped)
                yield pipeline.batch(batch.x, batch.aux, dist.device), len(batch.y)

        rows = []
        for out_batch, count in infer(forward, inputs(), autocast):
            rows.append(out_batch["embedding"].numpy())
            bar.update(count)
        with atomic_open(parts / f"{kind}-{k:06d}.npy") as fh:
            np.save(fh, np.concatenate(rows).astype(np.float32))
    bar.close()
    distributed.barrier(dist)
    if not dist.is_main:
        return None
    features = {kind: np.concatenate([np.load(parts / f"{kind}-{k:06d}.npy") for w_kind, k in work if w_kind == kind])
                if any(w_kind == kind for w_kind, _ in work) else np.zeros((0, 0), np.float32) for kind in ("probe", "distractor")}
    meta: dict[str, Any] = {"method": cfg.method, "run_id": Path(run_dir).name, "embedding": name, "protocol": lists.protocol,
                            "dataset": split.dataset, "split_fingerprint": split.fingerprint, "amp": str(amp) if amp else None,
                            "params": lists.params, "config_hash": manifest.get("config_hash")}
    write_embeddings(out, probe_ids=lists.probes, probe_identity=lists.probe_identity, probe_features=features["probe"],
                     distractor_ids=lists.distractors, distractor_features=features["distractor"],
                     probe_train_count=lists.probe_train_count, distractor_identity=lists.distractor_identity, meta=meta)
    if devkit_dir is not None:
        megaface.write_features(Path(devkit_dir) / "probes", lists.probes, features["probe"])
        megaface.write_features(Path(devkit_dir) / "distractors", lists.distractors, features["distractor"])
    shutil.rmtree(parts, ignore_errors=True)
    return out


def identify_run(run_dir: Path, *, protocol_lists: FaceLists | None = None, progress: bool = False) -> dict[str, Any]:
    """``embed`` (heldout protocol unless ``protocol_lists``) then ``evaluate-faces`` on a run; the
    results are written to ``RUN/face_results.json`` (what ``report`` finds) and returned."""
    from oltr_bench.metrics.faces import evaluate_embeddings
    from oltr_bench.splits.faces import heldout

    run_dir = Path(run_dir)
    if protocol_lists is None:
        manifest = RunDir(run_dir).read_manifest() or {}
        protocol_lists = heldout(find_split(manifest.get("split_dir") or manifest.get("dataset")))
    out = run_dir / "embeddings" / f"{protocol_lists.protocol}.npz"
    embed_run(run_dir, protocol_lists, out, progress=progress)
    results = evaluate_embeddings(out, progress=progress)
    atomic_write_json(run_dir / RunDir.FACE_RESULTS, results)
    return results

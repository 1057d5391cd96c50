"""The one-call evaluation of any model: ``oltr_bench.evaluate_model(model, dataset=...)``.

Anchored on OpenOOD's evaluator: hand over a ``torch.nn.Module`` and a split, get every metric of
SPEC.md §3 back, without the training harness. The images are read by the data layer
(:class:`~oltr_bench.data.lists.ListDataset`), the forward passes run in the engine's one
inference loop (:func:`~oltr_bench.engine.inference.infer`), and the numbers come from
:func:`oltr_bench.metrics.evaluate`, exactly as ``oltr-bench run`` and ``oltr-bench evaluate``
compute them, so a model gives the same results either way.

The model returns logits ``[B, C]`` (C = the split's known classes), or ``(logits, known_score)``,
or a dict with ``logits`` (or ``probs``) and optionally ``known_score`` (higher = more likely
known; SPEC.md §2) and ``pred`` (its own open-set decision, -1 = unknown).
"""

from __future__ import annotations

import contextlib
import os
from typing import Any, Callable, Mapping

import numpy as np
import torch

from oltr_bench.config import resolve_config
from oltr_bench.data.lists import ListDataset, make_loader, raise_failures
from oltr_bench.data.transforms import CallablePipeline, Pipeline, build_pipeline
from oltr_bench.engine.distributed import pick_device
from oltr_bench.engine.inference import infer
from oltr_bench.errors import OltrError
from oltr_bench.metrics.evaluate import evaluate
from oltr_bench.metrics.predictions import Predictions, write_predictions
from oltr_bench.protocols import DEFAULT_THRESHOLD
from oltr_bench.splits.format import SplitDir
from oltr_bench.splits.locate import find_split

OUTPUT_KEYS = ("logits", "probs", "known_score", "pred")


def evaluate_model(
    model: torch.nn.Module,
    dataset: str | os.PathLike | SplitDir = "embedded",
    *,
    transform: Callable | None = None,
    device: str | torch.device | None = None,
    which: str = "test",
    protocol: str = "oltr",
    threshold: float = DEFAULT_THRESHOLD,
    batch_size: int = 256,
    workers: int = 0,
    method: str | None = None,
    predictions: str | os.PathLike | None = None,
) -> dict[str, Any]:
    """Score ``model`` on a split and return the results (the contents of ``results.json``).

    ``dataset``: a dataset name whose split lies in the work folder (``embedded``, ``imagenet_lt``;
    as ``run --dataset``), a split directory, or a loaded :class:`SplitDir`. ``transform``: a
    callable on PIL RGB images returning the input tensor (a torchvision transform); default: the
    evaluation transform ``oltr-bench run`` uses on that dataset. ``device``: ``"cpu"``,
    ``"cuda"``, a :class:`torch.device`, or None for a GPU when there is one. ``which``: ``test``
    (test + open lists) or ``val``; ``protocol`` and ``threshold`` as ``oltr-bench evaluate``.
    ``predictions``: also write the predictions file (SPEC.md §2) there, for ``oltr-bench
    leaderboard submit``. The model is put in eval mode for the passes and back in its mode after.
    """
    split = dataset if isinstance(dataset, SplitDir) else find_split(dataset)
    if which not in ("test", "val"):
        raise OltrError(f"which={which!r}: expected 'test' (the test and open lists) or 'val'")
    device = pick_device() if device is None else torch.device(device)
    pipeline = build_pipeline(resolve_config("plain", split.dataset, {}).data, train=False) if transform is None \
        else CallablePipeline(transform)
    parts = ["val"] if which == "val" else [s for s in ("test", "open") if split.has(s)]
    was_training = model.training
    model.to(device).eval()
    try:
        ids, chunks = [], []
        for part in parts:
            data = ListDataset(split, part, pipeline)
            ids += data.paths
            chunks.append(_outputs(model, data, pipeline, device, batch_size, workers))
    finally:
        model.train(was_training)
    merged = {key: np.concatenate([c[key] for c in chunks]) for key in chunks[0]}
    if "pred" in merged:  # the inference loop hands every output over as float32
        merged["pred"] = merged["pred"].astype(np.int64)
    scores_key = "probs" if "probs" in merged else "logits"
    preds = Predictions(
        ids=np.asarray(ids, dtype=np.str_), scores=merged[scores_key], scores_are_probs=scores_key == "probs",
        split_fingerprint=split.fingerprint, pred=merged.get("pred"), known_score=merged.get("known_score"),
        meta={"method": method, "model": type(model).__name__, "evaluated_by": "oltr_bench.evaluate_model"},
    )
    results = evaluate(preds, split, which=which, protocol=protocol, threshold=threshold, method=method)
    if predictions is not None:
        write_predictions(predictions, ids=preds.ids, split_fingerprint=preds.split_fingerprint,
                          logits=None if preds.scores_are_probs else preds.scores,
                          probs=preds.scores if preds.scores_are_probs else None,
                          pred=preds.pred, known_score=preds.known_score, meta=preds.meta)
        results["provenance"]["predictions"] = str(predictions)
    return results


def _outputs(model: torch.nn.Module, data: ListDataset, pipeline: Pipeline, device: torch.device, batch_size: int,
             workers: int) -> dict[str, np.ndarray]:
    """The model's outputs over one list, in list order."""
    positions = list(range(len(data)))
    batches = [[(i, 0) for i in positions[s:s + batch_size]] for s in range(0, len(positions), batch_size)]

    def inputs():
        for batch in make_loader(data, batches, workers=workers, pin_memory=device.type == "cuda"):
            raise_failures(batch.skipped)
            yield pipeline.batch(batch.x, batch.aux, device), None

    chunks: dict[str, list[torch.Tensor]] = {}
    for out, _ in infer(lambda x: _as_dict(model(x)), inputs(), contextlib.nullcontext):
        for key, value in out.items():
            chunks.setdefault(key, []).append(value)
    return {key: torch.cat(values).numpy() for key, values in chunks.items()}


def _as_dict(out: Any) -> dict[str, torch.Tensor]:
    if isinstance(out, torch.Tensor):
        return {"logits": out}
    if isinstance(out, (tuple, list)) and len(out) == 2 and all(isinstance(o, torch.Tensor) for o in out):
        return {"logits": out[0], "known_score": out[1]}
    if isinstance(out, Mapping) and ("logits" in out or "probs" in out):
        return {key: out[key] for key in OUTPUT_KEYS if key in out}
    raise OltrError(
        f"the model returned {type(out).__name__}; expected logits [B, C], a (logits, known_score) pair, or a dict with "
        "'logits' or 'probs' and optionally 'known_score' and 'pred'"
    )

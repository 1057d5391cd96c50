"""One run of one method on one split: initialise (from stage 1), train or fit, predict, evaluate.

:class:`Engine` is also the :class:`~oltr_bench.method.EngineContext` a method's hooks see. Its
parts, one job each: :mod:`~oltr_bench.engine.build` (method, model, precision),
:mod:`~oltr_bench.engine.data` (datasets, loaders, device inputs), :mod:`~oltr_bench.engine.loop`
(the epochs) with :mod:`~oltr_bench.engine.hooks` (checkpoints, training log, TensorBoard),
:mod:`~oltr_bench.engine.inference` (every batched forward pass), :mod:`~oltr_bench.engine.features`
(cached frozen-backbone outputs), :mod:`~oltr_bench.engine.provenance` (the manifest) and the run
directory (:class:`~oltr_bench.formats.rundir.RunDir`). Stage-2 methods start from the stage-1
checkpoint, copying the keys that exist; the test and open lists are read only for the final
evaluation.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from oltr_bench.config import NEUTRAL_KEYS, RunConfig, comparable, config_hash
from oltr_bench.engine import distributed, optim, provenance
from oltr_bench.engine.build import autocast_dtype, build_method, seed_everything
from oltr_bench.engine.data import RunData
from oltr_bench.engine.distributed import Dist, pick_device
from oltr_bench.engine.features import CachedInputs
from oltr_bench.engine.hooks import CheckpointHook, Hook, Phase, TensorBoardHook, TrainLogHook
from oltr_bench.engine.inference import gather, infer, share
from oltr_bench.engine.loop import TrainLoop
from oltr_bench.errors import OltrError
from oltr_bench.formats.rundir import RunDir
from oltr_bench.metrics.core import top1
from oltr_bench.metrics.evaluate import evaluate
from oltr_bench.metrics.predictions import Predictions, evaluation_lists, write_predictions
from oltr_bench.models.backbones import PRETRAINED_BY_PROTOCOL
from oltr_bench.splits.format import SplitDir
from oltr_bench.utils.io import WRITE_ERRORS, WriteError, write_error

log = logging.getLogger(__name__)


class Engine:
    """One run of one method on one split; also the method hooks' :class:`~oltr_bench.method.EngineContext`."""

    def __init__(self, cfg: RunConfig, split: SplitDir, run_dir: Path | RunDir, *, quick: bool = False,
                 stage1_dir: Path | None = None, progress: bool = True, dist: Dist | None = None, resume: bool = False,
                 allow_unsafe_checkpoints: bool = False):
        self.cfg, self.split, self.quick = cfg, split, quick
        self.rundir = RunDir(run_dir)
        self.stage1_dir = stage1_dir
        self.dist = dist or Dist(device=pick_device())
        self.device = self.dist.device
        self.rank, self.world_size = self.dist.rank, self.dist.world_size
        self.progress = progress and self.dist.is_main
        self.resume = resume
        self.phase = Phase()
        cfg.validate(quick=quick)
        seed_everything(cfg.seed)
        self.method, model = build_method(cfg, split)
        self.info = self.method.info
        self.model = model.to(self.device)
        self.channels_last = cfg.train.channels_last
        if self.channels_last:
            self.model.to(memory_format=torch.channels_last)
        self.amp_dtype = autocast_dtype(cfg.train.precision, self.device)
        if self.device.type == "cuda":
            torch.backends.cudnn.benchmark = True  # fixed input sizes: let cuDNN pick the fastest kernels
            if cfg.train.tf32 is not None:  # null keeps PyTorch's defaults (the standard profile)
                torch.backends.cuda.matmul.allow_tf32 = cfg.train.tf32
                torch.backends.cudnn.allow_tf32 = cfg.train.tf32
        self.sampler_kind = cfg.data.sampler or self.method.sampler
        self.data = RunData(cfg, split, self.dist, quick=quick, channels_last=self.channels_last, phase=self.phase,
                            progress=self.progress)
        self.features: CachedInputs | None = None
        self.feature_cache_info: dict[str, Any] = {}
        self.warnings: list[str] = []
        self.checkpoints = CheckpointHook(self.rundir, resume=resume, allow_unsafe=allow_unsafe_checkpoints)
        self.hooks: list[Hook] = []

    # -- the EngineContext a method sees ---------------------------------------------------------
    def outputs(self, split: str) -> dict[str, torch.Tensor]:
        if split not in ("train", "val"):
            raise OltrError(f"methods may only look at the train and val splits, not {split!r}")
        return self.split_outputs(split)

    def log(self, message: str) -> None:
        if self.dist.is_main:
            log.info("%s", message)

    def warn(self, message: str) -> None:
        self.warnings.append(message)
        if self.dist.is_main:
            log.warning("%s", message)

    # -- parts -------------------------------------------------------------------------------
    def autocast(self):
        return torch.autocast(self.device.type, dtype=self.amp_dtype or torch.bfloat16, enabled=self.amp_dtype is not None)

    def use_feature_cache(self) -> None:
        """Frozen-backbone methods train and evaluate on cached backbone outputs when the config allows."""
        self.features = CachedInputs.setup(self)

    def split_outputs(self, which: str) -> dict[str, torch.Tensor]:
        """Eval-mode head outputs over a whole split, list order, with ``labels`` and ``index`` (gathered
        over ranks; from the feature cache when it is on)."""
        if self.features is not None:
            return self.features.outputs(which)
        self.model.eval()
        dataset = self.data.dataset(which, train=False)
        chunks: dict[str, list[torch.Tensor]] = {}
        batches = self.data.eval_batches(dataset, share(len(dataset), self.dist), which)
        for out, batch in infer(self.model, batches, self.autocast):
            for key, value in [*out.items(), ("labels", batch.y), ("index", batch.index)]:
                chunks.setdefault(key, []).append(value)
        return gather(self.dist, chunks)

    def val_top1(self) -> float:
        """Closed-set top-1 on the val split (model selection), by the metrics' definition (0 for an empty split)."""
        out = self.split_outputs("val")
        return top1(out["logits"].argmax(1).numpy(), out["labels"].numpy()) or 0.0

    def sync_method_state(self) -> None:
        """Every rank takes rank 0's model parameters, buffers and method state (after hooks)."""
        if not self.dist.enabled:
            return
        distributed.broadcast_state(self.dist, self.model)
        state = distributed.broadcast_object(self.dist, self.method.state_dict())
        if not self.dist.is_main:
            self.method.load_state_dict(state)

    def init_from_stage1(self) -> dict[str, Any] | None:
        """Copy the stage-1 checkpoint into the model; the manifest's summary of what was copied."""
        if self.stage1_dir is None:
            return None
        state = self.checkpoints.load(RunDir(self.stage1_dir).checkpoint("best"))
        report = self.method.load_stage1(self.model, state["model"])
        return {"copied": len(report["copied"]), "fresh": report["fresh"], "ignored": report["ignored"]}

    # -- prediction ----------------------------------------------------------------------------
    def predict(self, which: str) -> Predictions:
        ids, chunks = [], []
        for part in evaluation_lists(self.split, which):
            dataset = self.data.dataset(part, train=False)
            out = self.split_outputs(part)
            chunks.append(self.method.predict(out))
            ids += [dataset.paths[i] for i in out["index"].tolist()]
        merged = {k: torch.cat([c[k] for c in chunks]).numpy() for k in chunks[0]}
        scores_key = "probs" if "probs" in merged else "logits"
        return Predictions(
            ids=np.asarray(ids, dtype=np.str_), scores=merged[scores_key], scores_are_probs=scores_key == "probs",
            split_fingerprint=self.split.fingerprint, pred=merged.get("pred"), known_score=merged.get("known_score"),
            meta={"method": self.cfg.method, "config_hash": config_hash(self.cfg), "run_id": self.rundir.name, "quick": self.quick},
        )

    def save_predictions(self, which: str, preds: Predictions) -> Path:
        path = self.rundir.predictions(which)
        write_predictions(path, ids=preds.ids, split_fingerprint=preds.split_fingerprint,
                          logits=None if preds.scores_are_probs else preds.scores,
                          probs=preds.scores if preds.scores_are_probs else None,
                          pred=preds.pred, known_score=preds.known_score, meta=preds.meta)
        return path

    # -- the whole run -------------------------------------------------------------------------
    def _start(self) -> tuple[dict[str, int] | None, dict[str, float], float, dict[str, Any]]:
        """The plan, learning rates and manifest; warnings about the setup; the run directory's first files."""
        cfg, train = self.cfg, self.cfg.train
        plan = optim.plan(cfg, self.data.num_samples("train"), self.world_size, self.quick) if self.method.trains else None
        lr, factor = optim.effective_lr(train, plan["batch_size"] if plan else train.batch_size)
        if plan and not train.lr_scaling and plan["batch_size"] != train.reference_batch_size:
            self.warn(f"learning rates kept at {{'features': {train.lr.features}, 'classifier': {train.lr.classifier}}} for a "
                      f"global batch of {plan['batch_size']} although they are set for {train.reference_batch_size} "
                      "(lr scaling is off)")
        if self.method.stage == 1 and not cfg.model.weights and cfg.model.backbone in PRETRAINED_BY_PROTOCOL:
            self.warn(f"{cfg.model.backbone} starts from random weights: {PRETRAINED_BY_PROTOCOL[cfg.model.backbone]}; "
                      "name a local weights file with --set model.weights=PATH")
        manifest = provenance.start_manifest(self, plan, lr, factor)
        previous = self.rundir.read_manifest() if self.resume else None
        if previous:
            method_defaults = self.method.defaults
            if comparable(self.rundir.read_config() or {}, method_defaults) != comparable(cfg.to_dict(), method_defaults):
                raise OltrError(f"cannot resume {self.rundir.path}: it was started with another config "
                                f"(hash {previous.get('config_hash')}, now {manifest['config_hash']}); only "
                                f"{', '.join('.'.join(k) for k in NEUTRAL_KEYS)} may change on resume")
            manifest["started"] = previous.get("started", manifest["started"])
            manifest["resumed"] = previous.get("resumed", []) + [{"at": provenance.now(), "previous_status": previous.get("status")}]
            self.phase.times = {k: float(v) for k, v in previous.get("phase_seconds", {}).items()}
        if self.dist.is_main:
            self.rundir.write_config(cfg.to_dict())
            self.rundir.clear_results()
            self.rundir.write_manifest(manifest)
        return plan, lr, factor, manifest

    def run(self) -> dict[str, Any] | None:
        """Train (or fit), predict and evaluate; rank 0 returns the results (other ranks None)."""
        cfg, main = self.cfg, self.dist.is_main
        plan, lr, factor, manifest = self._start()
        started = time.perf_counter()
        try:
            if cfg.log.tensorboard and main:
                self.hooks.append(TensorBoardHook(self.rundir))
            with self.phase("init"):
                manifest["stage1_init"] = self.init_from_stage1()
            best_info: dict[str, Any] = {"epoch": 0}
            if self.method.trains:
                hooks = [TrainLogHook(self.rundir, main), *self.hooks, self.checkpoints]
                manifest["training"] = TrainLoop(self, plan, lr, factor, hooks).run()
                best = self.checkpoints.load("best", self.device)
                self.model.load_state_dict(best["model"])
                self.method.load_state_dict(best.get("method", {}))
                best_info = {"epoch": best["epoch"], "val_top1": best["val_top1"]}
            elif self.stage1_dir is None:
                raise OltrError(f"method {cfg.method!r} trains nothing and needs a stage-1 run to start from")
            else:
                self.model.requires_grad_(False)
                self.use_feature_cache()
            with self.phase("fit"):
                self.method.fit(self)
            self.sync_method_state()
            self.checkpoints.save(self, "best", best_info)  # the final model, with the state fit() produced
            with self.phase("predict"):
                val_preds, test_preds = self.predict("val"), self.predict("test")
            for paths in distributed.all_gather_object(self.dist, sorted(self.data.skipped)):
                self.data.skipped.update(paths)  # every rank's unreadable images, for the manifest and `partial`
            results = self._evaluate(val_preds, test_preds) if main else None
            if main:
                manifest.update(self._closing(started), status="complete", finished=provenance.now())
                self.rundir.write_manifest(manifest)
                self.rundir.write_results(results)  # last: its presence means complete
        except BaseException as exc:
            if isinstance(exc, OSError) and exc.errno in WRITE_ERRORS:
                exc = write_error(exc.filename, exc)
            if main:
                manifest.update(self._closing(started), status="failed", error=f"{type(exc).__name__}: {exc}")
                try:
                    self.rundir.write_manifest(manifest)
                except OltrError:  # the disk is full: the manifest keeps its last state
                    log.error("could not record the failure in %s", self.rundir.manifest_file)
            if isinstance(exc, WriteError):
                raise WriteError(f"{exc}. The run {self.rundir.path} is marked failed; run the same command with --resume "
                                 "once there is space: it continues from its last checkpoint") from None
            raise
        finally:
            for hook in self.hooks:
                hook.close()
        distributed.barrier(self.dist)
        return results

    def _evaluate(self, val_preds: Predictions, test_preds: Predictions) -> dict[str, Any]:
        """Write both predictions files and score them (SPEC.md §3); the test results with the val metrics."""
        self.save_predictions("val", val_preds)
        self.save_predictions("test", test_preds)
        with self.phase("evaluate"):
            ev = self.cfg.eval
            common = {"protocol": ev.protocol, "threshold": ev.open_threshold, "method": self.cfg.method,
                      "partial": self.quick or bool(self.data.skipped)}
            val_results = evaluate(val_preds, self.split, which="val", **common)
            results = evaluate(test_preds, self.split, which="test", provenance={"run_dir": str(self.rundir.path.resolve()),
                                                                                       "profile": self.cfg.profile}, **common)
        results["val_metrics"] = val_results["metrics"]
        return results

    def _closing(self, started: float) -> dict[str, Any]:
        """Manifest entries known at the end of an attempt (successful or not)."""
        skipped = sorted(self.data.skipped)
        return {
            "phase_seconds": self.phase.times,
            "wall_seconds": sum(self.phase.times.values()),
            "attempt_seconds": time.perf_counter() - started,
            "feature_cache": self.feature_cache_info or None,
            "image_cache": self.data.image_caches or None,
            "unreadable_images": {"count": len(skipped), "paths": skipped[:100]},
            "warnings": self.warnings,
        }

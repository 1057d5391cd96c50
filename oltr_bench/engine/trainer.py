"""The engine: trains and evaluates any registered method on any split (OLTR protocol mechanics).

Protocol mechanics kept exactly (research/oltr.md §3.3):

- an epoch is ``floor(N_train / batch)`` steps whatever the sampler;
- SGD with momentum and weight decay, one parameter group per part (features, classifier) with
  its own learning rate, ``StepLR`` stepped once per epoch after the epoch's optimisation;
- model selection on the validation split only (best val top-1, closed set); the test and open
  lists are read only for the final evaluation;
- stage-2 methods start from the stage-1 checkpoint, copying the keys that exist.
"""

from __future__ import annotations

import io
import json
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
from torch import nn
from tqdm import tqdm

from oltr_bench.config import config_hash, dump_yaml
from oltr_bench.data.lists import ListDataset
from oltr_bench.data.samplers import make_stream
from oltr_bench.data.transforms import build_transform
from oltr_bench.engine import rundir
from oltr_bench.engine.method import DatasetInfo, Method, MethodModel
from oltr_bench.errors import OltrError
from oltr_bench.metrics.evaluate import evaluate, write_results
from oltr_bench.metrics.predictions import Predictions, write_predictions
from oltr_bench.models.backbones import build_backbone
from oltr_bench.registry import METHODS
from oltr_bench.splits.format import SplitDir
from oltr_bench.utils.io import atomic_write_bytes, atomic_write_text


def pick_device() -> torch.device:
    return torch.device("cuda") if torch.cuda.is_available() else torch.device("cpu")


def seed_everything(seed: int) -> None:
    torch.manual_seed(seed)
    np.random.seed(seed % 2**32)


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


@dataclass
class Phase:
    """Wall-clock timer for the manifest's per-phase times."""

    times: dict[str, float] = field(default_factory=dict)

    def __call__(self, name: str):
        phase = self

        class _Timer:
            def __enter__(self):
                self.start = time.perf_counter()

            def __exit__(self, *exc):
                phase.times[name] = phase.times.get(name, 0.0) + time.perf_counter() - self.start

        return _Timer()


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
        device: torch.device | None = None,
    ):
        self.cfg = cfg
        self.split = split
        self.run_dir = run_dir
        self.quick = quick
        self.stage1_dir = stage1_dir
        self.progress = progress
        self.device = device or pick_device()
        self.phase = Phase()
        self.method_cls = METHODS.get(cfg["method"])
        seed_everything(int(cfg["seed"]))
        self.backbone = build_backbone(cfg["model"])
        self.info = DatasetInfo(split.num_classes, tuple(split.train_counts), self.backbone.feat_dim)
        self.method: Method = self.method_cls(cfg["params"], self.info)
        self.model: MethodModel = self.method.build_model(self.backbone).to(self.device)
        self.sampler_kind = cfg["data"]["sampler"] or self.method.sampler
        self._subsets = self._quick_subsets() if quick else {}
        self._log_file = None

    # -- data ------------------------------------------------------------------------------
    def _quick_subsets(self) -> dict[str, list[int]]:
        q, seed = self.cfg["quick"], int(self.cfg["seed"])
        subsets = {
            "train": quick_subset(self.split.labels("train"), int(q["train_per_class"]), seed),
            "val": quick_subset(self.split.labels("val"), int(q["eval_per_class"]), seed),
            "test": quick_subset(self.split.labels("test"), int(q["eval_per_class"]), seed),
        }
        if self.split.has("open"):
            n_open = len(self.split.entries("open"))
            subsets["open"] = sorted(np.random.default_rng(seed).permutation(n_open)[: int(q["open_images"])].tolist())
        return subsets

    def dataset(self, which: str, train: bool) -> ListDataset:
        return ListDataset(self.split, which, build_transform(self.cfg["data"], train), self._subsets.get(which))

    def _loader(self, dataset, batch_sampler=None, batch_size: int | None = None) -> torch.utils.data.DataLoader:
        workers = int(self.cfg["data"]["workers"])
        return torch.utils.data.DataLoader(
            dataset,
            batch_sampler=batch_sampler,
            batch_size=batch_size if batch_sampler is None else 1,
            shuffle=False,
            num_workers=workers,
            persistent_workers=False,
            pin_memory=self.device.type == "cuda",
        )

    # -- EngineContext -----------------------------------------------------------------------
    def log(self, message: str) -> None:
        tqdm.write(message)

    @torch.no_grad()
    def forward_dataset(self, dataset: ListDataset, desc: str) -> dict[str, torch.Tensor]:
        """Head outputs of the model in eval mode over ``dataset`` (concatenated, on the CPU)."""
        self.model.eval()
        loader = self._loader(dataset, batch_size=int(self.cfg["eval"]["batch_size"]))
        chunks: dict[str, list[torch.Tensor]] = {}
        labels = []
        for x, y, _ in tqdm(loader, desc=desc, leave=False, disable=not self.progress, unit="batch"):
            out = self.model(x.to(self.device, non_blocking=True))
            for key, value in out.items():
                chunks.setdefault(key, []).append(value.detach().float().cpu())
            labels.append(y)
        result = {k: torch.cat(v) for k, v in chunks.items()}
        result["labels"] = torch.cat(labels) if labels else torch.empty(0, dtype=torch.long)
        return result

    def outputs(self, split: str) -> dict[str, torch.Tensor]:
        if split not in ("train", "val"):
            raise OltrError(f"methods may only look at the train and val splits, not {split!r}")
        return self.forward_dataset(self.dataset(split, train=False), f"{split} outputs")

    # -- training ----------------------------------------------------------------------------
    def effective_lr(self) -> tuple[dict[str, float], float]:
        train = self.cfg["train"]
        factor = 1.0
        if train["lr_scaling"]:
            factor = int(train["batch_size"]) / int(train["reference_batch_size"])
        return {k: float(v) * factor for k, v in train["lr"].items()}, factor

    def _optimizers(self):
        train = self.cfg["train"]
        lr, _ = self.effective_lr()
        groups = self.method.param_groups(self.model, lr)
        optimizers = []
        if groups:
            optimizers.append(
                torch.optim.SGD(groups, lr=lr["classifier"], momentum=float(train["momentum"]), weight_decay=float(train["weight_decay"]))
            )
        optimizers += self.method.extra_optimizers(self.model)
        step, gamma = int(train["scheduler"]["step_size"]), float(train["scheduler"]["gamma"])
        schedulers = [torch.optim.lr_scheduler.StepLR(opt, step_size=step, gamma=gamma) for opt in optimizers]
        return optimizers, schedulers

    def _write_log(self, record: dict[str, Any]) -> None:
        with open(self.run_dir / "train_log.jsonl", "a", encoding="utf-8") as fh:
            fh.write(json.dumps(record) + "\n")

    def _save_checkpoint(self, name: str, epoch: int, extra: dict[str, Any]) -> None:
        buffer = io.BytesIO()
        torch.save({"model": self.model.state_dict(), "method": self.method.state_dict(), "epoch": epoch, **extra}, buffer)
        atomic_write_bytes(self.run_dir / "checkpoints" / name, buffer.getvalue())

    def _load_model_state(self, path: Path) -> dict[str, Any]:
        state = torch.load(path, map_location=self.device, weights_only=False)
        self.model.load_state_dict(state["model"])
        self.method.load_state_dict(state.get("method", {}))
        return state

    def init_from_stage1(self) -> list[str]:
        if self.stage1_dir is None:
            return []
        state = torch.load(self.stage1_dir / "checkpoints" / "best.pt", map_location=self.device, weights_only=False)
        return self.method.load_stage1(self.model, state["model"])

    def val_top1(self) -> float:
        out = self.forward_dataset(self.dataset("val", train=False), "val")
        return float((out["logits"].argmax(1) == out["labels"]).float().mean()) if len(out["labels"]) else 0.0

    def train(self) -> dict[str, Any]:
        train_cfg = self.cfg["train"]
        train_set = self.dataset("train", train=True)
        batch = int(train_cfg["batch_size"])
        steps = len(train_set) // batch
        epochs = int(train_cfg["epochs"])
        if self.quick:
            epochs = min(epochs, int(self.cfg["quick"]["epochs"]))
            batch = min(batch, max(1, len(train_set) // 2))
            steps = min(max(1, len(train_set) // batch), int(self.cfg["quick"]["max_steps"]))
        if steps < 1:
            raise OltrError(f"the train list has {len(train_set)} images, fewer than one batch of {batch}; lower train.batch_size")
        stream = make_stream(self.sampler_kind, train_set.labels, int(self.cfg["data"]["samples_per_class"]), int(self.cfg["seed"]))
        optimizers, schedulers = self._optimizers()
        with self.phase("train_start_hook"):
            self.method.on_train_start(self)
        best = {"epoch": -1, "val_top1": -math.inf}
        for epoch in range(epochs):
            self.model.train()
            indices = stream.take(steps * batch).reshape(steps, batch).tolist()
            loader = self._loader(train_set, batch_sampler=indices)
            bar = tqdm(loader, total=steps, desc=f"epoch {epoch + 1}/{epochs}", disable=not self.progress, unit="step")
            start, seen, loss_sum = time.perf_counter(), 0, 0.0
            with self.phase("train"):
                for x, y, _ in bar:
                    x, y = x.to(self.device, non_blocking=True), y.to(self.device, non_blocking=True)
                    outputs = self.model(x, y)
                    loss, parts = self.method.loss(outputs, y, self.model)
                    if not torch.isfinite(loss):
                        raise OltrError(f"the {self.cfg['method']} loss became {float(loss)} at epoch {epoch + 1}; lower the learning rate")
                    for opt in optimizers:
                        opt.zero_grad(set_to_none=True)
                    loss.backward()
                    for opt in optimizers:
                        opt.step()
                    seen += len(y)
                    loss_sum += float(loss.detach()) * len(y)
                    bar.set_postfix(loss=f"{float(loss.detach()):.3f}", img_s=f"{seen / (time.perf_counter() - start):.0f}")
            for sched in schedulers:
                sched.step()
            with self.phase("validate"):
                val_top1 = self.val_top1()
            record = {
                "epoch": epoch + 1, "steps": steps, "train_loss": loss_sum / max(seen, 1), "val_top1": val_top1,
                "lr": [g["lr"] for opt in optimizers for g in opt.param_groups][:2],
                "images_per_s": seen / max(time.perf_counter() - start, 1e-9),
            }
            self._write_log(record)
            if val_top1 > best["val_top1"]:
                best = {"epoch": epoch + 1, "val_top1": val_top1}
                self._save_checkpoint("best.pt", epoch + 1, {"val_top1": val_top1})
            self._save_checkpoint("last.pt", epoch + 1, {"val_top1": val_top1})
            self.log(f"epoch {epoch + 1}/{epochs}: loss {record['train_loss']:.4f}, val top-1 {val_top1:.4f}")
        return {"epochs": epochs, "steps_per_epoch": steps, "batch_size": batch, **{f"best_{k}": v for k, v in best.items()}}

    # -- prediction --------------------------------------------------------------------------
    def predict(self, which: str) -> Predictions:
        parts = ["val"] if which == "val" else [s for s in ("test", "open") if self.split.has(s)]
        ids, chunks = [], []
        for part in parts:
            dataset = self.dataset(part, train=False)
            out = self.forward_dataset(dataset, part)
            chunks.append({k: v for k, v in self.method.predict(out).items()})
            ids += dataset.paths
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
    def run(self) -> dict[str, Any]:
        cfg = self.cfg
        lr, lr_factor = self.effective_lr()
        manifest: dict[str, Any] = {
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
            "device": str(self.device),
            "world_size": 1,
            "batch_size": int(cfg["train"]["batch_size"]),
            "reference_batch_size": int(cfg["train"]["reference_batch_size"]),
            "lr_scale_factor": lr_factor,
            "effective_lr": lr,
            "sampler": self.sampler_kind,
            "seed": int(cfg["seed"]),
            "parameters": sum(p.numel() for p in self.model.parameters()),
            "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        }
        atomic_write_text(self.run_dir / "config.yaml", dump_yaml(cfg))
        rundir.write_manifest(self.run_dir, manifest)
        try:
            with self.phase("init"):
                manifest["stage1_keys_copied"] = len(self.init_from_stage1())
            if self.method.trains:
                manifest["training"] = self.train()
                self._load_model_state(self.run_dir / "checkpoints" / "best.pt")
            elif self.stage1_dir is None:
                raise OltrError(f"method {cfg['method']!r} trains nothing and needs a stage-1 run to start from")
            with self.phase("fit"):
                self.method.fit(self)
            if not self.method.trains:
                self._save_checkpoint("best.pt", 0, {})
            with self.phase("predict"):
                val_preds = self.predict("val")
                test_preds = self.predict("test")
                self.save_predictions("val", val_preds)
                self.save_predictions("test", test_preds)
            with self.phase("evaluate"):
                ev = cfg["eval"]
                common = {"protocol": ev["protocol"], "threshold": float(ev["open_threshold"]), "method": cfg["method"], "partial": self.quick}
                val_results = evaluate(val_preds, self.split, which="val", **common)
                results = evaluate(test_preds, self.split, which="test", provenance={"run_dir": str(self.run_dir.resolve())}, **common)
                results["val_metrics"] = val_results["metrics"]
        except BaseException as exc:
            manifest["status"] = "failed"
            manifest["error"] = f"{type(exc).__name__}: {exc}"
            manifest["phase_seconds"] = self.phase.times
            rundir.write_manifest(self.run_dir, manifest)
            raise
        manifest["phase_seconds"] = self.phase.times
        manifest["status"] = "complete"
        manifest["finished"] = time.strftime("%Y-%m-%dT%H:%M:%S%z")
        rundir.write_manifest(self.run_dir, manifest)
        write_results(self.run_dir / "results.json", results)  # last: its presence means complete
        return results

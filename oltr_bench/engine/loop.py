"""The training loop: epochs of optimisation, each followed by a scheduler step and validation.

OLTR mechanics kept exactly (research/oltr.md §3.3): an epoch is ``floor(N_train / batch)``
steps of the sample stream whatever the sampler; ``StepLR`` (or the later baselines' cosine) is
stepped once per epoch after its optimisation; the best epoch is chosen by validation top-1 on
the val split only. Under torchrun every rank trains on its share of each global batch of one
sample stream (:func:`~oltr_bench.data.samplers.epoch_batches`), with BatchNorm statistics over
the global batch (``train.sync_bn``).

Around the loop, :mod:`~oltr_bench.engine.hooks` write checkpoints (and restore them on
``--resume``), the training log and TensorBoard scalars.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any, Iterable

import torch
from tqdm import tqdm

from oltr_bench.data.lists import ListDataset, guarded
from oltr_bench.data.samplers import EpochBatches, epoch_batches, make_stream
from oltr_bench.engine import distributed, optim
from oltr_bench.engine.hooks import Hook, initial_best
from oltr_bench.errors import OltrError

if TYPE_CHECKING:
    from oltr_bench.engine.engine import Engine


class TrainLoop:
    """The epochs of one run (``engine`` holds the model, method, data and device)."""

    def __init__(self, engine: "Engine", plan: dict[str, int], lr: dict[str, float], factor: float, hooks: list[Hook]):
        self.engine = engine
        self.epochs, self.steps, self.batch = plan["epochs"], plan["steps_per_epoch"], plan["batch_size"]
        self.plan = plan
        self.hooks = hooks
        cfg = engine.cfg
        self.optimizers, self.schedulers = optim.optimizers(engine.method, engine.model, cfg.train, lr, factor)
        engine.use_feature_cache()
        if engine.dist.enabled and cfg.train.sync_bn:
            distributed.convert_sync_batchnorm(engine.model, engine.device)
        self.train_set = engine.data.dataset("train", train=True)
        self.stream = make_stream(engine.sampler_kind, self.train_set.labels, cfg.data.samples_per_class, cfg.seed)
        self.best, self.start_epoch = initial_best(), 0

    def run(self) -> dict[str, Any]:
        """Train every epoch not done yet; the plan and the best epoch, for the manifest."""
        engine, cfg = self.engine, self.engine.cfg
        for hook in self.hooks:
            hook.before_train(self)
        if self.start_epoch == 0:  # not resumed
            with engine.phase("train_start_hook"):
                engine.method.on_train_start(engine)
            engine.sync_method_state()
        net = optim.network(engine.model, cfg.train, engine.dist)
        holder = EpochBatches()
        cached = engine.features
        loader = None if cached is not None else engine.data.loader(self.train_set, holder, persistent=True)
        start = cached.level if cached is not None else "images"
        for epoch in range(self.start_epoch, self.epochs):
            engine.method.on_epoch_start(epoch)
            holder.batches = epoch_batches(self.stream, self.steps, self.batch, cfg.seed, engine.rank, engine.world_size)
            engine.model.train()
            batches = loader if loader is not None else cached.train_batches(holder.batches)
            with engine.phase("train"):
                train_loss, images_per_s = self.epoch(net, batches, epoch, start)
            used_lr = [g["lr"] for opt in self.optimizers for g in opt.param_groups]
            for sched in self.schedulers:
                sched.step()
            with engine.phase("validate"):
                val_top1 = engine.val_top1()
            record = {"event": "epoch", "epoch": epoch + 1, "global_step": (epoch + 1) * self.steps, "steps": self.steps,
                      "train_loss": train_loss, "val_top1": val_top1, "lr": used_lr, "images_per_s": images_per_s}
            for hook in self.hooks:
                hook.after_epoch(self, record)
        distributed.barrier(engine.dist)  # best.pt is complete before any rank reads it
        return {**self.plan, **{f"best_{k}": v for k, v in self.best.items()}}

    def epoch(self, net: torch.nn.Module, batches: Iterable, epoch: int, start: str) -> tuple[float, float]:
        """One epoch of steps; the mean training loss and the images per second (all ranks together).

        The loss stays on the device between checks: reading it every step would make the host wait
        for the GPU each step. Finiteness, the progress bar and step records are checked every
        ``log.every_steps`` steps (every 50 when step records are off) and at the end."""
        engine, cfg = self.engine, self.engine.cfg
        dist, method = engine.dist, engine.method
        log_every = cfg.log.every_steps
        check_every = log_every or 50
        bar = tqdm(total=self.steps, desc=f"epoch {epoch + 1}/{self.epochs}", disable=not engine.progress, unit="step",
                   dynamic_ncols=True)
        started, seen = time.perf_counter(), 0
        loss_sum = torch.zeros((), dtype=torch.float64, device=engine.device)
        finite = torch.ones((), dtype=torch.bool, device=engine.device)
        last_check = 0
        dataset: ListDataset | None = self.train_set if start == "images" else None
        for step, batch in enumerate(guarded(batches)):
            prepared = engine.data.inputs(batch, dataset)
            n = 0 if prepared is None else len(prepared[1])
            if cfg.data.skip_corrupt and distributed.all_min_int(dist, n) == 0:
                bar.update(1)
                continue  # a rank has no image left in this batch: every rank skips the step
            x, y = prepared
            with engine.autocast():
                outputs = net(x, y) if start == "images" else net(x, y, start=start)
                loss, parts = method.loss(outputs, y, engine.model)
            loss_value = loss.detach()
            finite &= torch.isfinite(loss_value)
            for opt in self.optimizers:
                opt.zero_grad(set_to_none=True)
            loss.backward()
            for opt in self.optimizers:
                opt.step()
            seen += n
            loss_sum += loss_value.double() * n
            bar.update(1)
            if (step + 1) % check_every and step + 1 != self.steps:
                continue
            value = float(loss_value)
            if distributed.all_sum_int(dist, int(not bool(finite))):
                raise OltrError(f"the {cfg.method} loss became non-finite (rank {engine.rank}) at epoch {epoch + 1}, "
                                f"between steps {last_check + 1} and {step + 1}; lower the learning rate")
            last_check = step + 1
            elapsed = max(time.perf_counter() - started, 1e-9)
            bar.set_postfix(loss=f"{value:.3f}", img_s=f"{seen * engine.world_size / elapsed:.0f}")
            if log_every and (step + 1) % log_every == 0:
                (global_loss,) = distributed.all_mean(dist, [value])
                record = {"event": "step", "epoch": epoch + 1, "step": step + 1, "global_step": epoch * self.steps + step + 1,
                          "loss": global_loss, **{k: float(v) for k, v in parts.items() if k != "loss"},
                          "lr": [g["lr"] for opt in self.optimizers for g in opt.param_groups],
                          "images_per_s": seen * engine.world_size / elapsed}
                for hook in self.hooks:
                    hook.after_step(self, record)
        bar.close()
        if distributed.all_sum_int(dist, int(not bool(finite))):  # steps after the last check were skipped ones
            raise OltrError(f"the {cfg.method} loss became non-finite (rank {engine.rank}) at epoch {epoch + 1}, "
                            f"after step {last_check}; lower the learning rate")
        loss_total, seen_total = distributed.all_mean(dist, [float(loss_sum), float(seen)])
        return loss_total / max(seen_total, 1e-9), seen * engine.world_size / max(time.perf_counter() - started, 1e-9)

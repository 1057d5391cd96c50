"""What happens around the training loop, one job per hook: checkpoints and resume, the training
log, TensorBoard; and :class:`Phase`, the wall-clock timer of the manifest's per-phase times.

The loop (:mod:`~oltr_bench.engine.loop`) calls every hook at the same points (mmengine's loop +
hooks): :meth:`Hook.before_train` once the optimisers exist (a resumed run restores its state
here), :meth:`Hook.after_step` with each step record, :meth:`Hook.after_epoch` with each epoch
record, and :meth:`Hook.close` when the run ends, successfully or not. Hooks write files on rank 0
only.
"""

from __future__ import annotations

import contextlib
import logging
import math
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from oltr_bench.config import config_hash
from oltr_bench.engine import checkpoint
from oltr_bench.errors import OltrError
from oltr_bench.formats.rundir import RunDir

if TYPE_CHECKING:
    from oltr_bench.engine.loop import TrainLoop

log = logging.getLogger(__name__)


@dataclass
class Phase:
    """Wall-clock timer: ``with phase("train"): ...`` adds the block's time to ``times["train"]``."""

    times: dict[str, float] = field(default_factory=dict)

    @contextlib.contextmanager
    def __call__(self, name: str):
        start = time.perf_counter()
        try:
            yield
        finally:
            self.times[name] = self.times.get(name, 0.0) + time.perf_counter() - start


class Hook:
    """Base class: every event does nothing."""

    def before_train(self, loop: "TrainLoop") -> None:
        """The optimisers, schedulers and sample stream exist; nothing has trained yet."""

    def after_step(self, loop: "TrainLoop", record: dict[str, Any]) -> None:
        """A step record (every ``log.every_steps`` steps)."""

    def after_epoch(self, loop: "TrainLoop", record: dict[str, Any]) -> None:
        """An epoch ended: trained, schedulers stepped, validated."""

    def close(self) -> None:
        """The run ends (also after an error)."""


class CheckpointHook(Hook):
    """``best.pt`` when validation improves and ``last.pt`` after every epoch; ``--resume`` restores
    ``last.pt`` (model, method, optimisers, schedulers, stream, best epoch, random states)."""

    def __init__(self, run: RunDir, *, resume: bool, allow_unsafe: bool):
        self.run = run
        self.resume = resume
        self.allow_unsafe = allow_unsafe

    def save(self, engine: Any, name: str, payload: dict[str, Any]) -> None:
        if engine.dist.is_main:
            checkpoint.save(self.run.checkpoint(name), {"model": checkpoint.cpu_state(engine.model.state_dict()),
                                                        "method": engine.method.state_dict(), **payload})

    def load(self, name_or_path: Any, map_location: Any = "cpu") -> dict[str, Any]:
        path = self.run.checkpoint(name_or_path) if isinstance(name_or_path, str) else name_or_path
        return checkpoint.load(path, map_location, allow_unsafe=self.allow_unsafe)

    def before_train(self, loop: "TrainLoop") -> None:
        engine = loop.engine
        last = self.run.checkpoint("last")
        state = self.load(last) if self.resume and last.is_file() else None
        if state is None:
            if self.resume and engine.dist.is_main:
                self.run.truncate_log(0)  # crashed during its first epoch: start over
            return
        engine.model.load_state_dict(state["model"])
        engine.method.load_state_dict(state["method"])
        for opt, saved in zip(loop.optimizers, state["optimizers"]):
            opt.load_state_dict(saved)
        for sched, saved in zip(loop.schedulers, state["schedulers"]):
            sched.load_state_dict(saved)
        loop.stream.load_state_dict(state["stream"])
        loop.best, loop.start_epoch = state["best"], int(state["epoch"])
        engine.data.skipped.update(state.get("skipped", []))
        if engine.dist.is_main:
            self.run.truncate_log(loop.start_epoch)
        log.info("resuming after epoch %d of %d from %s", loop.start_epoch, loop.epochs, last)
        checkpoint.restore_rng(state["rng"])

    def after_epoch(self, loop: "TrainLoop", record: dict[str, Any]) -> None:
        engine, epoch, val_top1 = loop.engine, record["epoch"], record["val_top1"]
        if val_top1 > loop.best["val_top1"]:
            loop.best = {"epoch": epoch, "val_top1": val_top1}
            self.save(engine, "best", {"epoch": epoch, "val_top1": val_top1})
        self.save(engine, "last", {
            "epoch": epoch, "val_top1": val_top1, "best": loop.best, "config_hash": config_hash(engine.cfg),
            "optimizers": [o.state_dict() for o in loop.optimizers], "schedulers": [s.state_dict() for s in loop.schedulers],
            "stream": loop.stream.state_dict(), "rng": checkpoint.rng_state(), "skipped": sorted(engine.data.skipped),
        })


class TrainLogHook(Hook):
    """``train_log.jsonl``: every step and epoch record; the epoch's summary line in the log."""

    def __init__(self, run: RunDir, is_main: bool):
        self.run = run
        self.is_main = is_main

    def after_step(self, loop: "TrainLoop", record: dict[str, Any]) -> None:
        if self.is_main:
            self.run.append_log(record)

    def after_epoch(self, loop: "TrainLoop", record: dict[str, Any]) -> None:
        if self.is_main:
            self.run.append_log(record)
            log.info("epoch %d/%d: loss %.4f, val top-1 %.4f", record["epoch"], loop.epochs, record["train_loss"],
                     record["val_top1"])


class TensorBoardHook(Hook):
    """TensorBoard scalars in ``<run>/tensorboard`` (``log.tensorboard``; needs the tensorboard package)."""

    SCALARS = ("loss", "train_loss", "val_top1", "images_per_s")

    def __init__(self, run: RunDir):
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError:
            raise OltrError("log.tensorboard (--tensorboard) needs the tensorboard package: pip install tensorboard") from None
        self.writer = SummaryWriter(str(run.tensorboard))

    def _write(self, record: dict[str, Any]) -> None:
        step = record.get("global_step", 0)
        for key in self.SCALARS:
            if key in record:
                self.writer.add_scalar(f"{record['event']}/{key}", record[key], step)
        for i, lr in enumerate(record.get("lr", [])):
            self.writer.add_scalar(f"lr/group{i}", lr, step)

    def after_step(self, loop: "TrainLoop", record: dict[str, Any]) -> None:
        self._write(record)

    def after_epoch(self, loop: "TrainLoop", record: dict[str, Any]) -> None:
        self._write(record)

    def close(self) -> None:
        self.writer.close()


def initial_best() -> dict[str, float]:
    return {"epoch": 0, "val_top1": -math.inf}

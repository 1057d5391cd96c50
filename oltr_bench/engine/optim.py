"""Optimisation setup: the plan (epochs, steps, global and per-process batch), the learning rates
with linear batch scaling, the optimisers and schedulers, and the network the steps call.

OLTR mechanics kept here: an epoch is ``floor(N_train / batch)`` steps whatever the sampler; SGD
with momentum and weight decay, one parameter group per part (features, classifier) with its own
learning rate; one scheduler per optimiser, stepped once per epoch (:mod:`~oltr_bench.engine.schedule`).
"""

from __future__ import annotations

from typing import Any

import torch

from oltr_bench.config import RunConfig
from oltr_bench.config.schema import TrainConfig
from oltr_bench.engine import schedule
from oltr_bench.engine.distributed import Dist
from oltr_bench.errors import OltrError
from oltr_bench.method import Method, MethodModel


def plan(cfg: RunConfig, n_train: int, world_size: int, quick: bool) -> dict[str, int]:
    """Epochs, steps per epoch and the global and per-process batch of a run over ``n_train`` images.

    ``--quick`` keeps the first ``quick.epochs`` epochs and at most ``quick.max_steps`` steps of a
    batch that fits its tiny subset."""
    batch, epochs, ws = cfg.train.batch_size, cfg.train.epochs, world_size
    if quick:
        epochs = min(epochs, cfg.quick.epochs)
        batch = min(batch, max(ws, n_train // 2))
        batch -= batch % ws
        steps = min(max(1, n_train // batch), cfg.quick.max_steps)
    else:
        steps = n_train // batch
    if batch % ws:
        raise OltrError(f"train.batch_size {batch} (the global batch) is not a multiple of the {ws} processes; "
                        f"choose a multiple of {ws}")
    if steps < 1:
        raise OltrError(f"the train list has {n_train} images, fewer than one batch of {batch}; lower train.batch_size")
    return {"epochs": epochs, "steps_per_epoch": steps, "batch_size": batch, "per_process_batch": batch // ws}


def effective_lr(train: TrainConfig, batch: int) -> tuple[dict[str, float], float]:
    """Learning rates for a global batch: linear scaling by ``batch / reference_batch_size`` unless turned off."""
    factor = batch / train.reference_batch_size if train.lr_scaling else 1.0
    return {"features": train.lr.features * factor, "classifier": train.lr.classifier * factor}, factor


def optimizers(method: Method, model: MethodModel, train: TrainConfig, lr: dict[str, float], factor: float,
               ) -> tuple[list[torch.optim.Optimizer], list[Any]]:
    """SGD over the method's parameter groups, the method's own optimisers (rates scaled by ``factor``),
    and a scheduler each over the configured length ``train.epochs`` (also in ``--quick``: a quick run
    trains the first epochs of the real schedule). What no optimiser updates is frozen."""
    groups = method.param_groups(model, lr)
    found: list[torch.optim.Optimizer] = []
    if groups:
        found.append(torch.optim.SGD(groups, lr=lr["classifier"], momentum=train.momentum, weight_decay=train.weight_decay))
    for extra in method.extra_optimizers(model):
        for group in extra.param_groups:
            group["lr"] *= factor
        found.append(extra)
    optimised = {id(p) for opt in found for g in opt.param_groups for p in g["params"]}
    for p in model.parameters():
        if id(p) not in optimised:
            p.requires_grad_(False)  # no gradients computed for what nothing updates
    return found, [schedule.build(opt, train.scheduler, train.epochs) for opt in found]


def network(model: MethodModel, train: TrainConfig, dist: Dist) -> torch.nn.Module:
    """The module the training steps call: the model, DDP-wrapped and compiled as configured."""
    net: torch.nn.Module = model
    if dist.enabled:
        from torch.nn.parallel import DistributedDataParallel

        net = DistributedDataParallel(model, device_ids=[dist.device.index] if dist.device.type == "cuda" else None,
                                      find_unused_parameters=train.ddp_find_unused)
    if train.compile:
        net = torch.compile(net)
    return net

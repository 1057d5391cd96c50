"""Learning-rate schedules, stepped once per epoch (``train.scheduler``).

- ``step``: ``StepLR(step_size, gamma)``, the schedule of every OLTR stage (research/oltr.md §3.2).
- ``cosine``: ``CosineAnnealingLR(T_max=train.epochs, eta_min)``, the ``coslr`` schedule of the
  classifier-balancing (cRT, LWS) and BALMS (Balanced Softmax) configs; logit adjustment, whose
  official code is CIFAR-only, takes Balanced Softmax's.

``step_at`` places the step in the epoch as the official code does:

- ``epoch_end``: after the epoch's optimisation (OLTR's code since 2020-02-11). Epoch *e* (1-based)
  trains at the rate after *e − 1* steps: StepLR(10) decays from epoch 11, cosine starts at the base rate.
- ``epoch_start``: classifier-balancing and BALMS call ``scheduler.step()`` before each epoch's
  optimisation (``run_networks.py``), so epoch *e* trains at the rate after *e* steps: cosine's first
  epoch is already below the base rate and its last runs at ``eta_min``. Done here by one step
  before the first epoch, then one after each epoch, which keeps checkpoint and resume unchanged.
"""

from __future__ import annotations

import warnings

import torch

from oltr_bench.config.schema import SchedulerConfig


def build(optimizer: torch.optim.Optimizer, cfg: SchedulerConfig, epochs: int) -> torch.optim.lr_scheduler.LRScheduler:
    """The per-epoch scheduler of one optimiser; for ``epoch_start`` it has already taken its first step.

    ``cfg`` is a validated ``train.scheduler`` section (the schema checks names and positions).
    """
    if cfg.name == "cosine":
        sched: torch.optim.lr_scheduler.LRScheduler = torch.optim.lr_scheduler.CosineAnnealingLR(
            optimizer, T_max=max(epochs, 1), eta_min=cfg.eta_min)
    else:
        sched = torch.optim.lr_scheduler.StepLR(optimizer, step_size=cfg.step_size, gamma=cfg.gamma)
    if cfg.step_at == "epoch_start":
        with warnings.catch_warnings():  # PyTorch warns when the scheduler steps before the optimiser: here that is the intent
            warnings.simplefilter("ignore", UserWarning)
            sched.step()
    return sched

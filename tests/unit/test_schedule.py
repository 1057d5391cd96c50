"""Per-epoch learning-rate schedules (oltr_bench/engine/schedule.py): rates per epoch and bad settings."""

from __future__ import annotations

import math

import pytest
import torch

from oltr_bench.config.schema import RunConfig, SchedulerConfig
from oltr_bench.engine import schedule
from oltr_bench.errors import OltrError

BASE = {"name": "step", "step_size": 2, "gamma": 0.1, "eta_min": 0.0, "step_at": "epoch_end"}


def rates(epochs: int, **cfg) -> list[float]:
    """The learning rate each epoch trains at, with the engine's one scheduler step after each epoch."""
    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=0.2)
    sched = schedule.build(opt, SchedulerConfig(**{**BASE, **cfg}), epochs)
    used = []
    for _ in range(epochs):
        used.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    return used


def test_step_schedule_decays_after_step_size_epochs():
    assert rates(5) == pytest.approx([0.2, 0.2, 0.02, 0.02, 0.002], abs=1e-15)
    assert rates(3, step_at="epoch_start") == pytest.approx([0.2, 0.02, 0.02], abs=1e-15)


def test_cosine_schedule_at_the_end_and_at_the_start_of_each_epoch():
    closed_form = [0.01 + (0.2 - 0.01) * (1 + math.cos(math.pi * e / 5)) / 2 for e in range(6)]
    assert rates(5, name="cosine", eta_min=0.01) == pytest.approx(closed_form[:5], abs=1e-15)
    # classifier-balancing / BALMS: the first epoch is already annealed and the last runs at eta_min.
    assert rates(5, name="cosine", eta_min=0.01, step_at="epoch_start") == pytest.approx(closed_form[1:], abs=1e-15)


@pytest.mark.parametrize(("bad", "message"), [
    ({"name": "poly"}, "train.scheduler.name 'poly' is not known; expected one of: step, cosine"),
    ({"step_at": "middle"}, "train.scheduler.step_at 'middle' is not known; expected one of: epoch_end, epoch_start"),
    ({"step_size": 0}, "train.scheduler.step_size must be at least 1, found 0"),
])
def test_bad_schedule_settings_fail_with_a_clear_message(bad, message):
    cfg = RunConfig.from_dict({"train": {"scheduler": {**BASE, **bad}}})
    with pytest.raises(OltrError, match=message):
        cfg.validate()

"""OLTR's protocol choices as named options (issue 14): OpenMax's setting, FSLwF's base-only first stage."""

import pytest
import torch
import torch.nn.functional as F

from oltr_bench.config import resolve_config
from oltr_bench.engine.stage1 import stage1_overrides_for
from oltr_bench.errors import OltrError
from oltr_bench.method import DatasetInfo
from oltr_bench.registry import METHODS

COUNTS = (150, 120, 101, 100, 40, 5)  # 3 many-shot classes (> 100), 3 others
INFO = DatasetInfo(len(COUNTS), COUNTS, 4)


def method(name, **params):
    cls = METHODS.get(name)
    return cls({**cls.defaults, **params}, INFO)


def test_openmax_settings():
    assert (method("openmax").tail_size, method("openmax").alpha_rank) == (20, 10)  # OSDN's / the paper's
    oltr = method("openmax", setting="oltr", tail_size=40, alpha_rank=2)
    assert (oltr.tail_size, oltr.alpha_rank) == (5, 10)  # OLTR's run_openmax.py, whatever params say
    assert (method("openmax", tail_size=7, alpha_rank=3).tail_size, method("openmax", alpha_rank=3).alpha_rank) == (7, 3)
    with pytest.raises(OltrError, match="params.setting must be one of osdn, oltr"):
        method("openmax", setting="test-tuned")


def test_openmax_oltr_setting_from_the_command_line():
    cfg = resolve_config("openmax", "imagenet_lt", METHODS.get("openmax").defaults, ["params.setting=oltr"])
    assert cfg.params["setting"] == "oltr" and cfg.params["tune"] is False


def test_fslwf_base_only_first_stage_loss_is_ce_over_the_base_classes():
    torch.manual_seed(0)
    logits = torch.randn(5, len(COUNTS), dtype=torch.float64)
    targets = torch.tensor([0, 4, 2, 5, 1])
    base = method("fslwf_stage1", classes="base")
    assert base.base_ids.tolist() == [0, 1, 2]
    loss, parts = base.loss({"logits": logits}, targets, None)
    keep = torch.tensor([0, 2, 4])
    expected = F.cross_entropy(logits[keep][:, :3], targets[keep])
    assert loss.item() == pytest.approx(expected.item(), abs=1e-12)
    # all classes: today's cross-entropy over every class
    everything = method("fslwf_stage1")
    assert everything.loss({"logits": logits}, targets, None)[0].item() == pytest.approx(F.cross_entropy(logits, targets).item())
    # a batch without any base-class image: zero loss that still backpropagates
    logits.requires_grad_(True)
    none, _ = base.loss({"logits": logits}, torch.tensor([4, 5]).repeat(3)[:5], None)
    assert none.item() == 0.0
    none.backward()
    with pytest.raises(OltrError, match="params.classes must be one of all, base"):
        method("fslwf_stage1", classes="novel")


def test_fslwf_first_stage_option_selects_the_stage1_run():
    fslwf = METHODS.get("fslwf")
    assert stage1_overrides_for(fslwf, dict(fslwf.defaults), ["seed=3", "params.shots=5"]) == ["seed=3"]
    wanted = stage1_overrides_for(fslwf, {**fslwf.defaults, "first_stage": "base"}, ["seed=3"])
    assert wanted == ["seed=3", 'params.classes="base"', "params.many_threshold=100"]
    cfg = resolve_config("fslwf_stage1", "embedded", METHODS.get("fslwf_stage1").defaults, wanted)
    assert cfg.params["classes"] == "base" and cfg.seed == 3
    with pytest.raises(OltrError, match="params.first_stage must be one of all, base"):
        method("fslwf", first_stage="novel")

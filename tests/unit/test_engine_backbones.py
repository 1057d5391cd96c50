"""Backbones: OLTR's ResNet-10 (architecture, size, initialisation, MACs), local weights, stage-2 key copying."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from oltr_bench.method import LinearHead, MethodModel, copy_matching
from oltr_bench.engine.provenance import model_cost
from oltr_bench.config.schema import ModelConfig
from oltr_bench.errors import OltrError
from oltr_bench.models.backbones import build_backbone, load_body_weights, resnet_map_size


def resnet10(**kw):
    return build_backbone(ModelConfig(**{"backbone": "resnet10", "input_size": 224, "feat_dim": None, **kw}))


def test_resnet10_is_oltrs():
    body = resnet10().body
    assert [len(getattr(body, f"layer{i}")) for i in range(1, 5)] == [1, 1, 1, 1]
    assert body.conv1.kernel_size == (7, 7) and body.conv1.stride == (2, 2) and body.out_channels == 512
    # Parameters counted by hand: stem, then per stage two 3x3 convs + BNs (+ 1x1 downsample from stage 2).
    stem = 64 * 3 * 49 + 128
    stages = sum(cin * cout * 9 + cout * cout * 9 + 4 * cout + (cin * cout + 2 * cout if cin != cout else 0)
                 for cin, cout in ((64, 64), (64, 128), (128, 256), (256, 512)))
    assert sum(p.numel() for p in body.parameters()) == stem + stages == 4_905_792


def test_official_initialisation():
    torch.manual_seed(0)
    body = resnet10().body
    for m in body.modules():
        if isinstance(m, nn.Conv2d) and m.weight.numel() > 30000:
            k, out = m.kernel_size[0], m.out_channels
            assert float(m.weight.detach().std()) == pytest.approx(math.sqrt(2 / (k * k * out)), rel=0.05)
            assert abs(float(m.weight.detach().mean())) < 0.1 * math.sqrt(2 / (k * k * out))
        if isinstance(m, nn.BatchNorm2d):
            assert torch.all(m.weight == 1) and torch.all(m.bias == 0)


def test_resnet10_macs_at_224():
    model = MethodModel(resnet10(), LinearHead(512, 1000))
    cost = model_cost(model, 224, torch.device("cpu"))

    def conv(cin, cout, k, side):
        return cin * cout * k * k * side * side

    macs = conv(3, 64, 7, 112) + 2 * conv(64, 64, 3, 56)
    for cin, cout, side in ((64, 128, 28), (128, 256, 14), (256, 512, 7)):
        macs += conv(cin, cout, 3, side) + conv(cout, cout, 3, side) + conv(cin, cout, 1, side)
    macs += 512 * 1000
    assert cost["macs_per_image"] == macs and cost["parameters"] == 4_905_792 + 513_000
    assert 0.88e9 < macs < 0.90e9  # research/perf.md: 0.889 GMAC


def test_map_sizes_and_fc_add():
    assert [resnet_map_size(s) for s in (224, 112, 64)] == [7, 4, 2]
    backbone = build_backbone(ModelConfig(**{"backbone": "resnet152", "input_size": 64, "feat_dim": 512}))
    assert [len(getattr(backbone.body, f"layer{i}")) for i in range(1, 5)] == [3, 8, 36, 3]
    assert backbone.feat_dim == 512 and backbone.fc_add.in_features == 2048
    assert backbone(torch.zeros(2, 3, 64, 64)).shape == (2, 512)


def test_local_weights_load_and_mismatches_are_clear(tmp_path):
    source = resnet10()
    path = tmp_path / "w.pth"
    torch.save({"state_dict": {f"module.{k}": v for k, v in source.body.state_dict().items()} | {"fc.weight": torch.zeros(3)}}, path)
    target = resnet10()
    assert load_body_weights(target, path) == {"loaded": len(source.body.state_dict()), "ignored": 1}
    assert all(torch.equal(a, b) for a, b in zip(source.body.state_dict().values(), target.body.state_dict().values()))
    assert torch.equal(build_backbone(ModelConfig(**{"backbone": "resnet10", "input_size": 224, "feat_dim": None, "weights": str(path)})).body.conv1.weight,
                       source.body.conv1.weight)

    with pytest.raises(OltrError, match="does not exist; expected a local file .* Nothing is ever downloaded"):
        load_body_weights(target, tmp_path / "missing.pth")
    state = source.body.state_dict()
    del state["layer4.0.conv2.weight"]
    torch.save(state, path)
    with pytest.raises(OltrError, match=r"1 missing \(first: layer4.0.conv2.weight\)"):
        load_body_weights(target, path)
    torch.save(build_backbone(ModelConfig(**{"backbone": "resnet50", "input_size": 224, "feat_dim": None})).body.state_dict(), path)
    with pytest.raises(OltrError, match="shape mismatch: layer1.0.conv1.weight"):
        load_body_weights(target, path)
    path.write_text("not a checkpoint")
    with pytest.raises(OltrError, match="is not a readable PyTorch state dict"):
        load_body_weights(target, path)


def test_stage2_copy_keeps_new_fc_add_fresh():
    """ImageNet-LT: stage 1 has no fc_add, stage 2 adds one; every stage-1 key with the same shape is copied."""
    stage1 = MethodModel(build_backbone(ModelConfig(**{"backbone": "glyphnet", "input_size": 32, "feat_dim": None})), LinearHead(256, 5))
    stage2 = MethodModel(build_backbone(ModelConfig(**{"backbone": "glyphnet", "input_size": 32, "feat_dim": 64})), LinearHead(64, 5))
    fresh = stage2.backbone.fc_add.weight.clone()
    state = {k: v for k, v in stage1.state_dict().items() if not k.startswith("head.")}
    report = copy_matching(stage2, state)
    assert set(report["copied"]) == {k for k in stage1.state_dict() if k.startswith("backbone.")}
    assert set(report["fresh"]) == {"backbone.fc_add.weight", "backbone.fc_add.bias", "head.fc.weight", "head.fc.bias"}
    assert report["ignored"] == []
    assert torch.equal(stage2.backbone.fc_add.weight, fresh)
    assert torch.equal(stage2.backbone.body[0].weight, stage1.backbone.body[0].weight)


def test_stage2_copy_refuses_a_layer_that_changed_shape():
    """Like the official code: a key in both models with another shape is an error, never half a layer."""
    stage1 = MethodModel(build_backbone(ModelConfig(**{"backbone": "glyphnet", "input_size": 32, "feat_dim": None})), LinearHead(256, 5))
    stage2 = MethodModel(build_backbone(ModelConfig(**{"backbone": "glyphnet", "input_size": 32, "feat_dim": 64})), LinearHead(64, 5))
    before = stage2.head.fc.bias.clone()
    with pytest.raises(OltrError, match=r"1 keys change shape \(first: head.fc.weight \(5, 256\) -> \(5, 64\)\)"):
        copy_matching(stage2, stage1.state_dict())
    assert torch.equal(stage2.head.fc.bias, before)  # nothing copied

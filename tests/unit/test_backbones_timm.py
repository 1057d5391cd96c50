"""timm models as backbones (issue 14, point 5): built without downloading, local weights only."""

import pytest
import torch

from oltr_bench.config.schema import ModelConfig
from oltr_bench.errors import OltrError
from oltr_bench.models.backbones import build_backbone

timm = pytest.importorskip("timm")


def test_timm_cnn_backbone_gives_a_map_and_features():
    cfg = ModelConfig(backbone="timm:resnet18", input_size=64, feat_dim=32)
    torch.manual_seed(0)
    backbone = build_backbone(cfg)
    assert backbone.feature_map_shape == (512, 2, 2) and backbone.feat_dim == 32
    x = torch.randn(2, 3, 64, 64)
    backbone.eval()
    fmap = backbone.feature_map(x)
    assert fmap.shape == (2, 512, 2, 2)
    assert torch.allclose(backbone(x), backbone.pool(fmap))
    # the body is timm's forward_features
    assert torch.allclose(fmap, backbone.body.net.forward_features(x))


def test_timm_transformer_tokens_are_averaged():
    backbone = build_backbone(ModelConfig(backbone="timm:vit_tiny_patch16_224", input_size=224, feat_dim=None))
    assert backbone.feature_map_shape == (192, 1, 1) and backbone.feat_dim == 192
    backbone.eval()
    x = torch.randn(1, 3, 224, 224)
    assert torch.allclose(backbone(x), backbone.body.net.forward_features(x).mean(1))


def test_timm_weights_load_from_a_local_file_only(tmp_path):
    torch.manual_seed(1)
    net = timm.create_model("resnet18", pretrained=False, num_classes=10)
    path = tmp_path / "resnet18.pth"
    torch.save(net.state_dict(), path)  # with its classifier (fc.*), ignored
    backbone = build_backbone(ModelConfig(backbone="timm:resnet18", input_size=64, feat_dim=None, weights=str(path)))
    assert torch.equal(backbone.body.net.conv1.weight, net.conv1.weight)
    with pytest.raises(OltrError, match="does not exist"):
        build_backbone(ModelConfig(backbone="timm:resnet18", input_size=64, weights=str(tmp_path / "absent.pth")))


def test_unknown_timm_model_fails_naming_it():
    with pytest.raises(OltrError, match="timm has no model 'no_such_net'"):
        build_backbone(ModelConfig(backbone="timm:no_such_net"))

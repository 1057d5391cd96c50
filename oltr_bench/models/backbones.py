"""Backbones: ``images -> feature vector``, built from the config's ``model`` section.

Every backbone is a :class:`Backbone`: a convolutional ``body`` producing the last feature map
(``feature_map``), then ``pool``: global average pooling and an optional ``fc_add`` (Linear +
ReLU, OLTR's ``use_fc``) giving the feature size. Methods that work on the map (DME's modulated
attention) call the two halves separately; ``backbone(x) == pool(feature_map(x))``.

- ``resnet10``: OLTR's ResNet-10 (``ResNet(BasicBlock, [1, 1, 1, 1])``, 512-d), trained from
  scratch; ``resnet50`` and ``resnet152``: torchvision's architectures (2048-d; ``feat_dim: 512``
  adds OLTR's 2048 -> 512 ``fc_add``). Initialisation as the official ``ResNetFeature``:
  convolutions N(0, sqrt(2 / (k·k·out))), BatchNorm γ = 1, β = 0 (torchvision's ResNet
  initialisation is the same). ``model.weights: PATH`` loads a local torchvision-format state
  dict into the body (never downloaded); every body tensor must be present with its shape.
- ``glyphnet``: the small CNN of the embedded benchmark.
- ``timm:NAME``: any model of the optional ``timm`` package (``pip install 'oltr-bench[timm]'``),
  built with ``pretrained=False`` (nothing is downloaded; ``model.weights: PATH`` loads a local
  timm-format state dict, classifier keys ignored); its ``forward_features`` is the body. A
  transformer's tokens are averaged into a 1 x 1 map (so DME's spatial attention needs a
  convolutional model).

Global average pooling is adaptive, which equals the official ``AvgPool2d(7)`` at 224 pixels
and also works at other input sizes (MS1M-LT's 112, small test images).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Callable

import torch
from torch import nn
from torchvision.models import resnet as tv_resnet

from oltr_bench.errors import OltrError

if TYPE_CHECKING:
    from oltr_bench.config.schema import ModelConfig

BACKBONES: dict[str, Callable[["ModelConfig"], "Backbone"]] = {}


def register_backbone(name: str):
    def decorator(fn):
        BACKBONES[name] = fn
        return fn

    return decorator


class Backbone(nn.Module):
    """``body`` -> average pool -> [fc_add + ReLU]; ``feature_map_shape`` is the body's (C, H, W)."""

    def __init__(self, body: nn.Module, map_channels: int, map_size: int, feat_dim: int | None = None):
        super().__init__()
        self.body = body
        self.feature_map_shape = (map_channels, map_size, map_size)
        self.fc_add = nn.Linear(map_channels, feat_dim) if feat_dim else None
        self.feat_dim = feat_dim or map_channels

    def feature_map(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)

    def pool(self, fmap: torch.Tensor) -> torch.Tensor:
        features = torch.flatten(nn.functional.adaptive_avg_pool2d(fmap, 1), 1)
        if self.fc_add is not None:
            features = nn.functional.relu(self.fc_add(features))
        return features

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.pool(self.feature_map(x))


def _conv_bn_relu(cin: int, cout: int) -> list[nn.Module]:
    return [nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True)]


@register_backbone("glyphnet")
def glyphnet(model_cfg: ModelConfig) -> Backbone:
    """Small CNN for the 32x32 embedded benchmark: 4 conv stages (widths 32-64-128-256) -> 4x4 map."""
    widths = list(model_cfg.widths or (32, 64, 128, 256))
    layers: list[nn.Module] = []
    cin = 3
    for i, width in enumerate(widths):
        layers += _conv_bn_relu(cin, width)
        if i < len(widths) - 1:
            layers.append(nn.MaxPool2d(2))
        cin = width
    size = model_cfg.input_size // 2 ** (len(widths) - 1)
    return Backbone(nn.Sequential(*layers), cin, size, model_cfg.feat_dim or None)


class ResNetBody(nn.Module):
    """torchvision's ResNet up to ``layer4`` (attribute names as torchvision, so its state dicts load)."""

    def __init__(self, block: type[nn.Module], layers: list[int]):
        super().__init__()
        full = tv_resnet.ResNet(block, layers)  # its initialisation is the official one (see module doc)
        for name in ("conv1", "bn1", "relu", "maxpool", "layer1", "layer2", "layer3", "layer4"):
            setattr(self, name, getattr(full, name))
        self.out_channels = 512 * block.expansion

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        return self.layer4(self.layer3(self.layer2(self.layer1(x))))


def resnet_map_size(input_size: int) -> int:
    """Side of the last map: five stride-2 steps of floor((n - 1) / 2) + 1 (224 -> 7, 112 -> 4)."""
    for _ in range(5):
        input_size = (input_size - 1) // 2 + 1
    return input_size


def _resnet(model_cfg: ModelConfig, block: type[nn.Module], layers: list[int]) -> Backbone:
    body = ResNetBody(block, layers)
    return Backbone(body, body.out_channels, resnet_map_size(model_cfg.input_size), model_cfg.feat_dim or None)


@register_backbone("resnet10")
def resnet10(model_cfg: ModelConfig) -> Backbone:
    """OLTR's ResNet-10: BasicBlock [1, 1, 1, 1], 512-d pooled feature (ImageNet-LT)."""
    return _resnet(model_cfg, tv_resnet.BasicBlock, [1, 1, 1, 1])


@register_backbone("resnet50")
def resnet50(model_cfg: ModelConfig) -> Backbone:
    """torchvision ResNet-50: Bottleneck [3, 4, 6, 3], 2048-d (MS1M-LT's backbone in the paper)."""
    return _resnet(model_cfg, tv_resnet.Bottleneck, [3, 4, 6, 3])


@register_backbone("resnet152")
def resnet152(model_cfg: ModelConfig) -> Backbone:
    """torchvision ResNet-152: Bottleneck [3, 8, 36, 3], 2048-d (Places-LT, from local ImageNet weights)."""
    return _resnet(model_cfg, tv_resnet.Bottleneck, [3, 8, 36, 3])


PRETRAINED_BY_PROTOCOL = {"resnet152": "OLTR's Places-LT starts ResNet-152 from ImageNet-pretrained (Caffe) weights"}
"""Backbones the benchmark protocol starts from pretrained weights; the engine warns when none are given."""


def load_body_weights(backbone: Backbone, path: str | Path) -> dict[str, int]:
    """Load a local torchvision-format state dict into ``backbone.body``; every body tensor must match.

    Accepts a plain state dict or one under ``state_dict``/``model``; a ``module.`` prefix is
    removed and keys the body does not have (e.g. ``fc.*``) are ignored. Returns counts.
    """
    path = Path(path)
    if not path.is_file():
        raise OltrError(f"model.weights {path} does not exist; expected a local file with pretrained weights "
                        f"(torchvision state dict, e.g. resnet152.pth). Nothing is ever downloaded")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises many types for a file that is not a checkpoint
        raise OltrError(f"model.weights {path} is not a readable PyTorch state dict: {exc}") from None
    for key in ("state_dict", "model"):
        if isinstance(state, dict) and isinstance(state.get(key), dict):
            state = state[key]
    if not isinstance(state, dict):
        raise OltrError(f"model.weights {path} holds a {type(state).__name__}; expected a state dict (name -> tensor)")
    state = {k.removeprefix("module."): v for k, v in state.items()}
    target = getattr(backbone.body, "weights_module", backbone.body)
    own = target.state_dict()
    missing = [k for k in own if k not in state]
    wrong = [f"{k} {tuple(state[k].shape)} (expected {tuple(own[k].shape)})" for k in own if k in state and state[k].shape != own[k].shape]
    if missing or wrong:
        detail = (f"{len(missing)} missing (first: {', '.join(missing[:3])})" if missing else "") + \
                 ("; " if missing and wrong else "") + (f"shape mismatch: {', '.join(wrong[:3])}" if wrong else "")
        raise OltrError(f"model.weights {path} does not fit the {type(backbone.body).__name__} body of this backbone: {detail}. "
                        f"Expected a torchvision-format state dict of the same architecture")
    target.load_state_dict({k: state[k] for k in own})
    return {"loaded": len(own), "ignored": len(state) - len(own)}


TIMM_PREFIX = "timm:"


class TimmBody(nn.Module):
    """A timm model's ``forward_features`` as a body: a [B, C, H, W] map (tokens averaged to 1 x 1)."""

    def __init__(self, net: nn.Module):
        super().__init__()
        self.net = net

    @property
    def weights_module(self) -> nn.Module:  # what model.weights loads into (timm's own key names)
        return self.net

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.net.forward_features(x)
        if out.dim() == 3:  # [B, tokens, C]
            out = out.mean(1)[:, :, None, None]
        return out


def timm_backbone(model_cfg: ModelConfig) -> Backbone:
    name = model_cfg.backbone[len(TIMM_PREFIX):]
    try:
        import timm
    except ImportError:
        raise OltrError(f"model.backbone {model_cfg.backbone!r} needs the timm package: pip install 'oltr-bench[timm]'") from None
    if not name or not timm.is_model(name):
        raise OltrError(f"model.backbone {model_cfg.backbone!r}: timm has no model {name!r} (timm.list_models() lists them)")
    body = TimmBody(timm.create_model(name, pretrained=False, num_classes=0))
    was = body.training
    body.eval()
    with torch.no_grad():
        shape = body(torch.zeros(1, 3, model_cfg.input_size, model_cfg.input_size)).shape
    body.train(was)
    if shape[2] != shape[3]:
        raise OltrError(f"model.backbone {model_cfg.backbone!r}: its feature map is {shape[2]} x {shape[3]}; expected a square map")
    return Backbone(body, int(shape[1]), int(shape[2]), model_cfg.feat_dim)


def build_backbone(model_cfg: ModelConfig) -> Backbone:
    """The backbone the config's ``model`` section names (registered names, or ``timm:NAME``)."""
    name = model_cfg.backbone
    if name.startswith(TIMM_PREFIX):
        backbone = timm_backbone(model_cfg)
        if model_cfg.weights:
            load_body_weights(backbone, model_cfg.weights)
        return backbone
    if name not in BACKBONES:
        raise OltrError(f"model.backbone {name!r} is not known; expected one of: {', '.join(sorted(BACKBONES))}")
    backbone = BACKBONES[name](model_cfg)
    if model_cfg.weights:
        load_body_weights(backbone, model_cfg.weights)
    return backbone

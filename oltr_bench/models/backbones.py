"""Backbones: ``images -> feature vector``, built from the config's ``model`` section.

Every backbone is a :class:`Backbone`: a convolutional ``body`` producing the last feature map
(``feature_map``), then ``pool``: global average pooling and an optional ``fc_add`` (Linear +
ReLU, OLTR's ``use_fc``) giving the feature size. Methods that work on the map (DME's modulated
attention) call the two halves separately; ``backbone(x) == pool(feature_map(x))``.
"""

from __future__ import annotations

from typing import Any, Callable

import torch
from torch import nn

from oltr_bench.errors import OltrError

BACKBONES: dict[str, Callable[[dict[str, Any]], "Backbone"]] = {}


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
def glyphnet(model_cfg: dict[str, Any]) -> Backbone:
    """Small CNN for the 32x32 embedded benchmark: 4 conv stages (widths 32-64-128-256) -> 4x4 map."""
    widths = [int(w) for w in model_cfg.get("widths") or (32, 64, 128, 256)]
    layers: list[nn.Module] = []
    cin = 3
    for i, width in enumerate(widths):
        layers += _conv_bn_relu(cin, width)
        if i < len(widths) - 1:
            layers.append(nn.MaxPool2d(2))
        cin = width
    size = int(model_cfg.get("input_size", 32)) // 2 ** (len(widths) - 1)
    return Backbone(nn.Sequential(*layers), cin, size, model_cfg.get("feat_dim") or None)


def build_backbone(model_cfg: dict[str, Any]) -> Backbone:
    name = model_cfg["backbone"]
    if name not in BACKBONES:
        raise OltrError(f"model.backbone {name!r} is not known; expected one of: {', '.join(sorted(BACKBONES))}")
    return BACKBONES[name](model_cfg)

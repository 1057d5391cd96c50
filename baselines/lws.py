r"""Learnable weight scaling, LWS (Kang et al., ICLR 2020, "Decoupling").

.. math::

    z_c = s_c\,(w_c^\top f + b_c)

Stage 2 on the plain model: backbone, W and b frozen (copied from the plain model); only the
per-class scales s (initialised to 1) are learned, with cross-entropy and class-aware sampling.

Paper: B. Kang et al., "Decoupling Representation and Classifier for Long-Tailed Recognition",
ICLR 2020, https://arxiv.org/abs/1910.09217. Official implementation:
facebookresearch/classifier-balancing @ f162ade, ``models/TauNormClassifier.py``
(``x = self.fc(x); x *= self.scales``, ``fc`` parameters ``requires_grad = False``) and
``config/ImageNet_LT/cls_lws.yaml`` (``fix: true``, ClassAwareSampler 4 per class, 5 epochs).

Follows the code: the scale multiplies the bias too, and s is unconstrained (it may become
negative).

Differs from the code: the representation and classifier are OLTR's plain model. The
real-dataset configs keep the official cosine schedule (see :mod:`oltr_bench.baselines.crt`).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from oltr_bench.method import Method
from oltr_bench.registry import METHODS


class LWSHead(nn.Module):
    """``z = s ⊙ (W f + b)`` with a frozen ``fc`` and learnable per-class scales ``s``."""

    def __init__(self, feat_dim: int, num_classes: int):
        super().__init__()
        self.fc = nn.Linear(feat_dim, num_classes)
        self.fc.requires_grad_(False)
        self.scales = nn.Parameter(torch.ones(num_classes))

    def forward(self, features: torch.Tensor, targets: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        return {"logits": self.fc(features) * self.scales, "features": features}


@METHODS.register("lws")
class LWS(Method):
    """Learnable weight scaling s_c·(w_c·f + b_c) on the frozen plain classifier, class-aware."""

    stage = 2
    init_from = "plain"
    frozen_backbone = True
    sampler = "class_aware"
    defaults: dict[str, Any] = {}

    def build_head(self) -> nn.Module:
        return LWSHead(self.info.feat_dim, self.info.num_classes)

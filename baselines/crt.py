r"""Classifier re-training, cRT (Kang et al., ICLR 2020, "Decoupling").

Stage 2 on the plain model: the backbone is frozen, the linear classifier ``z = W f + b`` is
re-initialised at random and retrained with cross-entropy under class-aware sampling.

Paper: B. Kang, S. Xie, M. Rohrbach, Z. Yan, A. Gordo, J. Feng, Y. Kalantidis, "Decoupling
Representation and Classifier for Long-Tailed Recognition", ICLR 2020,
https://arxiv.org/abs/1910.09217. Official implementation: facebookresearch/classifier-balancing
@ f162ade, ``config/ImageNet_LT/cls_crt.yaml`` (``fix: true``, ``stage1_weights: false``,
``ClassAwareSampler`` with 4 images per class; 10 epochs, lr 0.2 cosine) and
``run_networks.py: load_model`` (skips the ``DotProductClassifier`` weights during training).

Follows the code: the new classifier has PyTorch's default ``nn.Linear`` initialisation
(``adapt_init_state`` drops every ``head.*`` key of the stage-1 checkpoint); only the backbone
is copied.

Differs from the code: the representation is OLTR's plain model (Decoupling trains its own,
instance-balanced, 90 epochs). The real-dataset configs keep the official cosine annealing to 0,
stepped at the start of each epoch as ``run_networks.py`` does (``train.scheduler``). The engine trains the head on cached backbone features (eval-mode BatchNorm; the official
code runs the frozen backbone in train mode).
"""

from __future__ import annotations

from typing import Any

import torch

from oltr_bench.method import Method
from oltr_bench.registry import METHODS


@METHODS.register("crt")
class CRT(Method):
    """Classifier re-training: frozen plain backbone, new linear head, class-aware sampling."""

    stage = 2
    init_from = "plain"
    frozen_backbone = True
    sampler = "class_aware"
    defaults: dict[str, Any] = {}

    def adapt_init_state(self, state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        return {k: v for k, v in state.items() if not k.startswith("head.")}

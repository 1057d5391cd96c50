r"""LDAM loss with deferred re-weighting (Cao et al., NeurIPS 2019).

.. math::

    m_c = \frac{K}{n_c^{1/4}},\ K \text{ such that } \max_c m_c = 0.5, \qquad
    L = \frac{\sum_i w_{y_i}\,\big[-\log \mathrm{softmax}\big(s\,(z_i - m_{y_i} e_{y_i})\big)_{y_i}\big]}
             {\sum_i w_{y_i}}

with z the cosine logits of a normed linear layer (:class:`~oltr_bench.models.heads.NormedLinear`),
s = 30, and DRW (deferred re-weighting) class weights: w_c = 1 before epoch ``drw_epoch`` and
afterwards the class-balanced weights ``w_c = (1-β)/(1-β^{n_c})`` with β = 0.9999, rescaled to
sum to the number of classes.

Paper: K. Cao, C. Wei, A. Gaidon, N. Arechiga, T. Ma, "Learning Imbalanced Datasets with
Label-Distribution-Aware Margin Loss", NeurIPS 2019, https://arxiv.org/abs/1906.07413.
Official implementation: kaidic/LDAM-DRW @ 2536330, ``losses.py`` (``LDAMLoss``),
``models/resnet_cifar.py`` (``NormedLinear``), ``cifar_train.py`` (DRW: ``idx = epoch // 160``,
``betas = [0, 0.9999]``).

Follows the code:

- The margin is subtracted from the target cosine *before* scaling by s.
- The weighted loss has PyTorch's ``cross_entropy(weight=w)`` semantics: divided by Σ_i w_{y_i},
  not by B.
- β = 0 before the switch gives weights exactly 1 (the code computes them with the same formula).
- ``drw_epoch`` counts epochs from 0, as the official loop does (160 of 200 CIFAR epochs);
  configs set it for their schedule. The engine reports the epoch through ``on_epoch_start``.
- Classes with no training image get count 1 (the official formulas divide by zero).
- n_c is the dataset's training count (``info.train_counts``), also in a ``--quick`` run.

Our choice where the paper has only CIFAR settings: configs start DRW at the first StepLR decay
(the paper trains with LDAM "before annealing the learning rate" and re-weights after it;
CIFAR's epoch 160 of 200 is its first decay), so they keep a step schedule where BALMS's
ImageNet-LT config anneals by cosine. Not followed: the official CIFAR schedule's 5-epoch linear
learning-rate warm-up (a CIFAR setting for lr 0.1 at batch 128; no ImageNet-LT config uses it).

Scores: the head outputs ``logits = s·z`` (the scale the loss trains, without margins) and
``cosine = z``; predictions use ``s·z``, so softmax-based scores (open-set threshold, ECE) see
the trained temperature. The official evaluation only takes the argmax, which is the same.
Sampling is instance-balanced (the re-weighting does the balancing).
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from oltr_bench.method import DatasetInfo, Method, MethodModel
from oltr_bench.errors import OltrError
from oltr_bench.models.functional import at_least_float32
from oltr_bench.models.heads import NormedLinear
from oltr_bench.registry import METHODS


def ldam_margins(counts: torch.Tensor, max_margin: float = 0.5) -> torch.Tensor:
    """``m_c ∝ n_c^{-1/4}`` scaled so that the largest margin is ``max_margin`` (float64)."""
    m = counts.to(torch.float64).clamp_min(1.0).pow(-0.25)
    return m * (max_margin / m.max())


def drw_weights(counts: torch.Tensor, beta: float) -> torch.Tensor:
    """Class-balanced weights ``(1-β)/(1-β^n)`` normalised to sum to C (all 1 for β = 0)."""
    n = counts.to(torch.float64).clamp_min(1.0)
    w = (1.0 - beta) / (1.0 - torch.pow(torch.tensor(beta, dtype=torch.float64), n))
    return w / w.sum() * len(n)


def ldam_loss(
    cosine: torch.Tensor,
    targets: torch.Tensor,
    margins: torch.Tensor,
    scale: float = 30.0,
    weight: torch.Tensor | None = None,
) -> torch.Tensor:
    """``CE(s·(z - m_y·onehot(y)), y, weight)`` with PyTorch's weighted-mean reduction."""
    cosine = at_least_float32(cosine)
    shifted = cosine.scatter_add(1, targets.view(-1, 1), -margins.to(cosine)[targets].view(-1, 1))
    return F.cross_entropy(scale * shifted, targets, weight=None if weight is None else weight.to(cosine))


class LDAMHead(nn.Module):
    """Normed linear layer: ``cosine = x̂·ŵ_k`` and ``logits = s·cosine``."""

    def __init__(self, feat_dim: int, num_classes: int, scale: float):
        super().__init__()
        self.fc = NormedLinear(feat_dim, num_classes)
        self.scale = float(scale)

    def forward(self, features: torch.Tensor, targets: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        cosine = self.fc(features)
        return {"logits": self.scale * cosine, "cosine": cosine, "features": features}


@METHODS.register("ldam_drw")
class LDAMDRW(Method):
    """LDAM margin loss (s=30, max margin 0.5) on a normed head with deferred re-weighting."""

    defaults: dict[str, Any] = {"max_margin": 0.5, "scale": 30.0, "drw_beta": 0.9999, "drw_epoch": 160}
    sampler = "instance"

    def __init__(self, params: dict[str, Any], info: DatasetInfo):
        super().__init__(params, info)
        if float(params["scale"]) <= 0:
            raise OltrError(f"ldam_drw: params.scale must be > 0, got {params['scale']}")
        if not 0.0 <= float(params["drw_beta"]) < 1.0:
            raise OltrError(f"ldam_drw: params.drw_beta must be in [0, 1), got {params['drw_beta']}")
        counts = torch.tensor(info.train_counts, dtype=torch.float64)
        self.margins = ldam_margins(counts, float(params["max_margin"]))
        self.drw = drw_weights(counts, float(params["drw_beta"]))
        self.epoch = 0

    def build_head(self) -> nn.Module:
        return LDAMHead(self.info.feat_dim, self.info.num_classes, float(self.params["scale"]))

    def on_epoch_start(self, epoch: int) -> None:
        self.epoch = epoch

    def class_weights(self) -> torch.Tensor | None:
        """The DRW weights in force this epoch (None = unweighted)."""
        return self.drw if self.epoch >= int(self.params["drw_epoch"]) else None

    def loss(
        self, outputs: dict[str, torch.Tensor], targets: torch.Tensor, model: MethodModel
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        loss = ldam_loss(outputs["cosine"], targets, self.margins, float(self.params["scale"]), self.class_weights())
        return loss, {"ldam": loss.detach()}

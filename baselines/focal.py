r"""Focal loss, softmax multi-class form (Lin et al., ICCV 2017).

.. math::

    \mathrm{FL} = \frac{1}{B}\sum_i -\alpha_{y_i}\,(1 - p_i)^{\gamma}\,\log p_i,
    \qquad p_i = \mathrm{softmax}(z_i)_{y_i}

Paper: T.-Y. Lin, P. Goyal, R. Girshick, K. He, P. Dollár, "Focal Loss for Dense Object
Detection", ICCV 2017, https://arxiv.org/abs/1708.02002. The paper defines the sigmoid (binary)
loss with γ = 2, α = 0.25 for the foreground class; the softmax form above is the multi-class
extension used by classification baselines. OLTR (Table 3) reports a focal-loss baseline but
published no code and no γ/α; there is no official multi-class implementation.

Choices (and where they come from):

- γ = 2 by default (the paper's value); α = 1 (no class weighting) by default. ``alpha`` is a
  scalar applied to *every* class (Keras ``CategoricalFocalCrossentropy``); ``class_alpha`` is
  the optional list of C per-class weights α_c (``--set 'params.class_alpha=[...]'`` or a
  config file), used in its place. clcarwin/focal_loss_pytorch turns a scalar into [α, 1-α] for
  two classes; we do not.
- The loss is the mean over the batch (not normalised by Σα).
- The gradient is the true gradient of FL. clcarwin's widely copied version detaches p_t
  (``logpt.data.exp()``), which gives the same value but a different gradient; kaidic/LDAM-DRW's
  ``FocalLoss`` uses p = exp(-weighted CE), which differs when class weights are used.
- Computed from ``log_softmax`` in at least float32 (fp16 inputs are upcast); 1 - p is
  ``-expm1(log p)``. γ = 0 is exactly cross-entropy. For 0 < γ < 1 the factor's derivative is
  infinite at p = 1, so 1 - p is clamped at the dtype's smallest normal number (a value change
  below 1e-38).

Training: stage 1 with the class-aware sampler (OLTR: every Table 3 competitor used
class-aware sampling, issue #44).

Differences from OLTR's run: OLTR published no focal-loss code and does not state γ or α; ours
are γ = 2, α = 1 (the focal-loss paper's common choice, research/methods.md), on the dataset's
plain stage-1 schedule.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F

from oltr_bench.method import DatasetInfo, Method, MethodModel
from oltr_bench.errors import OltrError
from oltr_bench.models.functional import at_least_float32
from oltr_bench.registry import METHODS


def focal_loss(
    logits: torch.Tensor, targets: torch.Tensor, gamma: float = 2.0, alpha: float | torch.Tensor = 1.0
) -> torch.Tensor:
    """Mean softmax focal loss; ``alpha`` is a scalar or a [C] tensor of per-class weights."""
    logits = at_least_float32(logits)
    log_p = F.log_softmax(logits, dim=1).gather(1, targets.view(-1, 1)).squeeze(1)
    per_sample = -log_p
    if gamma != 0:
        one_minus_p = (-torch.expm1(log_p)).clamp_min(torch.finfo(log_p.dtype).tiny)
        per_sample = one_minus_p.pow(gamma) * per_sample
    if isinstance(alpha, torch.Tensor):
        per_sample = alpha.to(per_sample)[targets] * per_sample
    elif alpha != 1.0:
        per_sample = alpha * per_sample
    return per_sample.mean()


@METHODS.register("focal")
class Focal(Method):
    """Softmax focal loss -α_y (1-p_y)^γ log p_y (γ=2) with class-aware sampling."""

    defaults: dict[str, Any] = {"gamma": 2.0, "alpha": 1.0, "class_alpha": []}
    sampler = "class_aware"

    def __init__(self, params: dict[str, Any], info: DatasetInfo):
        super().__init__(params, info)
        self.gamma = float(params["gamma"])
        if self.gamma < 0:
            raise OltrError(f"focal: params.gamma must be >= 0, got {self.gamma}")
        class_alpha = params["class_alpha"]
        if class_alpha:
            if float(params["alpha"]) != 1.0:
                raise OltrError("focal: give either params.alpha (one weight for every class) or params.class_alpha, not both")
            if len(class_alpha) != info.num_classes or not all(isinstance(a, (int, float)) for a in class_alpha):
                raise OltrError(f"focal: params.class_alpha must be a list of {info.num_classes} numbers (one per class), "
                                f"found {len(class_alpha)} values")
            self.alpha: float | torch.Tensor = torch.tensor([float(a) for a in class_alpha], dtype=torch.float64)
        else:
            self.alpha = float(params["alpha"])

    def loss(
        self, outputs: dict[str, torch.Tensor], targets: torch.Tensor, model: MethodModel
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        loss = focal_loss(outputs["logits"], targets, self.gamma, self.alpha)
        return loss, {"focal": loss.detach()}

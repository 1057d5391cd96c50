r"""Balanced Softmax (Ren et al., NeurIPS 2020): cross-entropy on prior-shifted logits.

.. math::

    L = \frac{1}{B}\sum_i -\log \mathrm{softmax}(z_i + \log n)_{y_i}

with n_c the number of training images of class c. Inference uses the plain logits z.

Paper: J. Ren, C. Yu, S. Sheng, X. Ma, H. Zhao, S. Yi, H. Li, "Balanced Meta-Softmax for
Long-Tailed Visual Recognition", NeurIPS 2020, https://arxiv.org/abs/2007.10740.
Official implementation: jiawei-ren/BalancedMetaSoftmax-Classification @ 34a61e4,
``loss/BalancedSoftmaxLoss.py`` (adds ``log(sample_per_class)``; adding log π instead is
identical because log N cancels in the softmax).

Choices: n is the dataset's training count per class (``info.train_counts``), the label
distribution the model is trained on, also in a ``--quick`` run, which trains on a small
subset of it; a class with no training image would get log 0 = -inf, so its count is clamped
to 1 (the class then behaves as a one-image class). The official configs use instance-balanced
sampling: balanced softmax already compensates the prior, and class-balanced sampling on top
double-compensates (the reason BALMS adds a meta sampler), so ``sampler = "instance"``.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F

from oltr_bench.method import DatasetInfo, Method, MethodModel
from oltr_bench.models.functional import at_least_float32
from oltr_bench.registry import METHODS


def balanced_softmax_loss(logits: torch.Tensor, targets: torch.Tensor, counts: torch.Tensor) -> torch.Tensor:
    """``CE(z + log n, y)``, counts clamped to at least 1."""
    logits = at_least_float32(logits)
    log_n = counts.to(logits).clamp_min(1.0).log()
    return F.cross_entropy(logits + log_n, targets)


@METHODS.register("balanced_softmax")
class BalancedSoftmax(Method):
    """Balanced Softmax: cross-entropy on logits + log(class count), plain logits at test."""

    defaults: dict[str, Any] = {}
    sampler = "instance"

    def __init__(self, params: dict[str, Any], info: DatasetInfo):
        super().__init__(params, info)
        self.counts = torch.tensor(info.train_counts, dtype=torch.float64)

    def loss(
        self, outputs: dict[str, torch.Tensor], targets: torch.Tensor, model: MethodModel
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        loss = balanced_softmax_loss(outputs["logits"], targets, self.counts)
        return loss, {"balanced_ce": loss.detach()}

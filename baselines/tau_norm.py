r"""τ-normalised classifier (Kang et al., ICLR 2020, "Decoupling"), post-hoc on the plain model.

.. math::

    \tilde w_c = \frac{w_c}{\lVert w_c\rVert^{\tau}}, \qquad z_c = \tilde w_c^\top f \quad(\text{no bias})

τ = 0 gives the plain weights without bias, τ = 1 unit-norm weights. τ is chosen on the
validation split among linspace(0, 2, 21) = 0, 0.1, …, 2: the τ with the highest validation
accuracy (mean of per-class accuracies over the classes present, which equals top-1 on a
class-balanced validation set); ties go to the smaller τ. ``params.tune: false`` uses
``params.tau`` instead.

Paper: B. Kang et al., "Decoupling Representation and Classifier for Long-Tailed Recognition",
ICLR 2020, https://arxiv.org/abs/1910.09217. Official implementation:
facebookresearch/classifier-balancing @ f162ade, ``tau_norm.py`` (``pnorm``; sweeps
``np.linspace(0, 2, 21)`` and prints many/median/few and the mean per-class accuracy for every
τ, on whichever split it is given; it selects nothing itself).

Follows the code: the bias is dropped for every τ. A zero weight row (norm 0) stays zero
(its norm is clamped at 1e-12 before the power).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from oltr_bench.method import DatasetInfo, EngineContext, Method
from oltr_bench.errors import OltrError
from oltr_bench.registry import METHODS

TAU_GRID = tuple(i / 10 for i in range(21))
"""The official sweep ``np.linspace(0, 2, 21)``."""


def tau_normalized(weight: torch.Tensor, tau: float) -> torch.Tensor:
    """``w_c / ‖w_c‖^τ`` for every row (norms clamped at 1e-12)."""
    return weight / weight.norm(dim=1, keepdim=True).clamp_min(1e-12).pow(tau)


def mean_class_accuracy(pred: torch.Tensor, labels: torch.Tensor) -> float:
    """Mean over the classes present in ``labels`` of the per-class accuracy."""
    classes, inverse = labels.unique(return_inverse=True)
    correct = torch.zeros(len(classes), dtype=torch.float64).index_add_(0, inverse, (pred == labels).double())
    total = torch.zeros(len(classes), dtype=torch.float64).index_add_(
        0, inverse, torch.ones_like(labels, dtype=torch.float64)
    )
    return float((correct / total).mean())


class TauNormHead(nn.Module):
    """``z = f·(W/‖W‖^τ)ᵀ`` with the stage-1 ``fc`` (its bias is kept in the state but unused)."""

    def __init__(self, feat_dim: int, num_classes: int, tau: float):
        super().__init__()
        self.fc = nn.Linear(feat_dim, num_classes)
        self.register_buffer("tau", torch.tensor(float(tau), dtype=torch.float64))

    def forward(self, features: torch.Tensor, targets: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        w = tau_normalized(self.fc.weight, float(self.tau))
        return {"logits": features @ w.t(), "features": features}


@METHODS.register("tau_norm")
class TauNorm(Method):
    """τ-normalised plain classifier w/‖w‖^τ without bias, τ chosen on validation."""

    stage = 2
    init_from = "plain"
    trains = False
    frozen_backbone = True
    defaults: dict[str, Any] = {"tune": True, "tau": 1.0}

    def __init__(self, params: dict[str, Any], info: DatasetInfo):
        super().__init__(params, info)
        self.tau = float(params["tau"])
        if self.tau < 0:
            raise OltrError(f"tau_norm: params.tau must be >= 0, got {self.tau}")
        self.val_accuracy: dict[float, float] = {}

    def build_head(self) -> nn.Module:
        return TauNormHead(self.info.feat_dim, self.info.num_classes, self.tau)

    def fit(self, ctx: EngineContext) -> None:
        head = ctx.model.head
        if self.params["tune"]:
            val = ctx.outputs("val")
            weight = head.fc.weight.detach().to(device=val["features"].device, dtype=val["features"].dtype)
            for tau in TAU_GRID:
                pred = (val["features"] @ tau_normalized(weight, tau).t()).argmax(1)
                self.val_accuracy[tau] = mean_class_accuracy(pred, val["labels"])
            best = max(self.val_accuracy.values())
            self.tau = min(t for t, acc in self.val_accuracy.items() if acc == best)
            ctx.log(f"tau_norm: tau={self.tau:g} (validation accuracy {best:.4f})")
        head.tau.fill_(self.tau)

    def state_dict(self) -> dict[str, Any]:
        return {"tau": self.tau, "val_accuracy": dict(self.val_accuracy)}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.tau = float(state["tau"])
        self.val_accuracy = dict(state.get("val_accuracy", {}))

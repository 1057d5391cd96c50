r"""Logit-adjusted loss (Menon et al., ICLR 2021).

.. math::

    L = \frac{1}{B}\sum_i -\log \mathrm{softmax}\big(z_i + \log(\pi^{\tau} + \varepsilon)\big)_{y_i},
    \qquad \pi_c = n_c / \textstyle\sum_k n_k,\ \tau = 1,\ \varepsilon = 10^{-12}

Inference uses the plain logits z.

Paper: A. K. Menon, S. Jayasumana, A. S. Rawat, H. Jain, A. Veit, S. Kumar, "Long-tail learning
via logit adjustment", ICLR 2021, https://arxiv.org/abs/2007.07314.
Official implementation: google-research/google-research, ``logit_adjustment/main.py`` and
``utils.py`` (TensorFlow 2; ``build_loss_fn``), flag ``--tau 1.0``; the prior is the empirical
training-class distribution.

Followed from the code: ε is added to π^τ, not to π (the two differ for τ ≠ 1 and tiny priors).
The prior is the dataset's (``info.train_counts``), also in a ``--quick`` run.
With τ = 1 and ε = 0 the loss equals Balanced Softmax. The official code samples instances
uniformly (``sampler = "instance"``). The post-hoc variant is ``logit_adjust_posthoc``.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F

from oltr_bench.method import DatasetInfo, Method, MethodModel
from oltr_bench.errors import OltrError
from oltr_bench.models.functional import at_least_float32
from oltr_bench.registry import METHODS

PRIOR_EPS = 1e-12
"""The official ε in ``log(π^τ + ε)``."""


def log_adjusted_prior(counts: torch.Tensor, tau: float, eps: float = PRIOR_EPS) -> torch.Tensor:
    """``log(π^τ + ε)`` with π the normalised ``counts`` (computed in float64)."""
    prior = counts.to(torch.float64) / counts.to(torch.float64).sum()
    return (prior.pow(tau) + eps).log()


def logit_adjusted_loss(
    logits: torch.Tensor, targets: torch.Tensor, counts: torch.Tensor, tau: float = 1.0, eps: float = PRIOR_EPS
) -> torch.Tensor:
    """``CE(z + log(π^τ + ε), y)``."""
    logits = at_least_float32(logits)
    return F.cross_entropy(logits + log_adjusted_prior(counts, tau, eps).to(logits), targets)


def check_tau(method: str, tau: float) -> float:
    if tau < 0:
        raise OltrError(f"{method}: params.tau must be >= 0, got {tau}")
    return tau


@METHODS.register("logit_adjust")
class LogitAdjust(Method):
    """Logit-adjusted cross-entropy CE(z + log(π^τ + 1e-12)), τ=1; plain logits at test."""

    defaults: dict[str, Any] = {"tau": 1.0}
    sampler = "instance"

    def __init__(self, params: dict[str, Any], info: DatasetInfo):
        super().__init__(params, info)
        self.tau = check_tau("logit_adjust", float(params["tau"]))
        self.counts = torch.tensor(info.train_counts, dtype=torch.float64)

    def loss(
        self, outputs: dict[str, torch.Tensor], targets: torch.Tensor, model: MethodModel
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        loss = logit_adjusted_loss(outputs["logits"], targets, self.counts, self.tau)
        return loss, {"la_ce": loss.detach()}

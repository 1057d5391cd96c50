r"""Post-hoc logit adjustment (Menon et al., ICLR 2021) of the plain model.

.. math::

    \hat y = \arg\max_y\ z_y - \log(\pi_y^{\tau} + \varepsilon),
    \qquad \pi_c = n_c / \textstyle\sum_k n_k,\ \tau = 1,\ \varepsilon = 10^{-12}

``predict`` writes the adjusted logits, so every score (softmax, open-set threshold) is
computed from them.

Paper: A. K. Menon et al., "Long-tail learning via logit adjustment", ICLR 2021,
https://arxiv.org/abs/2007.07314. Official implementation: google-research/google-research,
``logit_adjustment/main.py`` (``mode='posthoc'``, the default mode; ``--tau 1.0``).

Follows the code: ε is added to π^τ; π is the dataset's training prior (``info.train_counts``). Nothing is trained: the plain (stage-1) model is used
as is; τ is fixed (the paper tunes it on held-out data; ``params.tau`` sets it).
"""

from __future__ import annotations

from typing import Any

import torch

from oltr_bench.baselines.logit_adjust import check_tau, log_adjusted_prior
from oltr_bench.method import DatasetInfo, Method
from oltr_bench.registry import METHODS


@METHODS.register("logit_adjust_posthoc")
class LogitAdjustPosthoc(Method):
    """Post-hoc logit adjustment of the plain model: z - log(π^τ + 1e-12), τ=1."""

    stage = 2
    init_from = "plain"
    trains = False
    frozen_backbone = True
    defaults: dict[str, Any] = {"tau": 1.0}

    def __init__(self, params: dict[str, Any], info: DatasetInfo):
        super().__init__(params, info)
        tau = check_tau("logit_adjust_posthoc", float(params["tau"]))
        self.adjustment = log_adjusted_prior(torch.tensor(info.train_counts, dtype=torch.float64), tau)

    def predict(self, outputs: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        logits = outputs["logits"]
        return {"logits": logits - self.adjustment.to(logits)}

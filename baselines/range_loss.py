r"""Range loss (Zhang et al., ICCV 2017) added to cross-entropy.

.. math::

    L = \mathrm{CE} + w\,(\alpha L_{intra} + \beta L_{inter}), \qquad
    L_{intra} = \sum_{c \in \text{batch}} \frac{k}{\sum_{j=1}^{k} 1/D_{c,j}}, \qquad
    L_{inter} = \max(m - D_{center}, 0)

on the features f the classifier sees. D_{c,1} ≥ D_{c,2} ≥ … are the distances between pairs
of samples of class c in the mini-batch (its "ranges"; k = 2 largest), and D_center is the
smallest distance between two class centres, a centre being the mean feature of the class
inside the mini-batch. Distances are Euclidean, or squared Euclidean with ``squared: true``
(the unofficial Caffe implementation, Charrin/RangeLoss-Caffe).

Paper: X. Zhang, Z. Fang, Y. Wen, Z. Li, Y. Qiao, "Range Loss for Deep Face Recognition with
Long-Tailed Training Data", ICCV 2017, https://arxiv.org/abs/1611.08976. There is no official
code. OLTR's own implementation lived in its repository history only:
zhmiao/OpenLongTailRecognition-OLTR @ 9ec1b7b, ``loss/RangeLoss.py`` (deleted in b85b00c).

Definitions for the cases the paper leaves open (paper version):

- a class with one sample in the batch has no range and contributes 0 to L_intra (it is still
  a centre for L_inter); a class with fewer than k pairs uses the pairs it has (two samples:
  the harmonic mean of one distance is that distance);
- a batch with a single class has no centre pair: L_inter = 0;
- distances are ``sqrt(max(D², 1e-24))`` and then at least 1e-12 (as OLTR clamps), so equal
  features give finite values and gradients.

``oltr_compat: true`` reproduces OLTR's ``RangeLoss`` literally (margin 5, α = β = 1 there):

1. L_intra: the Euclidean distances of *all ordered* same-class pairs of the batch, self-pairs
   included, clamped to [1e-12, 1e12], pooled over all classes; the two largest (usually the
   same pair twice) give ``2/(1/d₁ + 1/d₂)``: essentially the largest intra-class distance of
   the batch, one term, not a sum over classes.
2. L_inter: from a centre matrix C (class means of the training features, computed at the start
   as OLTR's ``init_centers`` did) the code forms ``2‖c_j‖² - 2 c_i·c_j`` (a mis-broadcast, not
   a distance), flattens it with the diagonal, clamps at [1e-12, 1e12] and takes the minimum:
   the diagonal (≈ 0 → 1e-12) always wins, so L_inter ≈ margin - 1e-12, a constant with no
   gradient. OLTR declared the centres an ``nn.Parameter``; since they never receive a
   gradient they are a buffer here.

Defaults: the paper's α, β, margin and loss weight are not recoverable (no code, values not
in the surviving text), so margin 5, α = β = 1 and k = 2 are OLTR's. OLTR weighted its feature
losses 0.01, but its range term is *one* distance per batch, while the paper's L_intra sums one
term per class in the batch: 32 with the class-aware batches of 128 (4 images per class). The
default weight 0.0003 ≈ 0.01/32 keeps OLTR's overall strength for the paper's loss. At 0.01, and
still at 0.001, the embedded benchmark's training collapses within 50 steps: L_intra pulls the
features of the fresh network (its feature is a ReLU output) to one point, every feature becomes
0 and cross-entropy stays at log C (BENCHMARKS.md, "Methods"). With ``oltr_compat`` use OLTR's
0.01. Training: stage 1 with the class-aware sampler, like every competitor in OLTR's Table 3.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from oltr_bench.method import DatasetInfo, EngineContext, LinearHead, Method, MethodModel
from oltr_bench.errors import OltrError
from oltr_bench.models.functional import at_least_float32, class_means, safe_sqrt, squared_distances
from oltr_bench.registry import METHODS

DIST_MIN, DIST_MAX = 1e-12, 1e12
"""OLTR's clamp of every distance ("for numerical stability")."""


def _distances(sq: torch.Tensor, squared: bool) -> torch.Tensor:
    d = sq if squared else safe_sqrt(sq, DIST_MIN)
    return d.clamp(DIST_MIN, DIST_MAX)


def range_loss_paper(
    features: torch.Tensor, labels: torch.Tensor, k: int = 2, margin: float = 5.0, squared: bool = False
) -> tuple[torch.Tensor, torch.Tensor]:
    """``(L_intra, L_inter)`` of the paper's range loss for one mini-batch."""
    features = at_least_float32(features)
    classes, inverse = labels.unique(return_inverse=True)
    intra = features.new_zeros(())
    centres = []
    for c in range(len(classes)):
        members = features[inverse == c]
        centres.append(members.mean(0))
        n = members.shape[0]
        if n < 2:
            continue
        i, j = torch.triu_indices(n, n, offset=1, device=features.device)
        pair = _distances(squared_distances(members, members)[i, j], squared)
        top = pair.topk(min(k, pair.numel())).values
        intra = intra + top.numel() / (1.0 / top).sum()
    if len(classes) < 2:
        return intra, features.new_zeros(())
    centre = torch.stack(centres)
    i, j = torch.triu_indices(len(classes), len(classes), offset=1, device=features.device)
    d_centre = _distances(squared_distances(centre, centre)[i, j], squared).min()
    return intra, F.relu(margin - d_centre)


def range_loss_oltr(
    features: torch.Tensor, labels: torch.Tensor, centres: torch.Tensor, margin: float = 5.0
) -> tuple[torch.Tensor, torch.Tensor]:
    """``(L_intra, L_inter)`` exactly as OLTR's ``loss/RangeLoss.py`` computes them (k = 2)."""
    features = at_least_float32(features)
    same = labels.view(-1, 1) == labels.view(1, -1)
    pooled = _distances(squared_distances(features, features)[same], squared=False)
    top = pooled.topk(min(2, pooled.numel())).values  # a one-sample batch has one pair (the official code fails)
    intra = top.numel() / (1.0 / top).sum()
    c = centres.to(features)
    mis_broadcast = 2.0 * (c * c).sum(1) - 2.0 * (c @ c.t())
    inter = (margin - mis_broadcast.flatten().clamp(DIST_MIN, DIST_MAX).min()).clamp(0.0, 1e6)
    return intra, inter


@METHODS.register("range")
class RangeLoss(Method):
    """Cross-entropy plus range loss (harmonic mean of the 2 largest intra-class ranges, centre margin)."""

    defaults: dict[str, Any] = {
        "weight": 0.0003,
        "alpha": 1.0,
        "beta": 1.0,
        "margin": 5.0,
        "k": 2,
        "squared": False,
        "oltr_compat": False,
    }
    sampler = "class_aware"

    def __init__(self, params: dict[str, Any], info: DatasetInfo):
        super().__init__(params, info)
        if int(params["k"]) < 1:
            raise OltrError(f"range: params.k must be >= 1, got {params['k']}")
        if params["oltr_compat"] and (int(params["k"]) != 2 or params["squared"]):
            raise OltrError("range: params.oltr_compat reproduces OLTR's code, which has k=2 and Euclidean distances")

    def build_head(self) -> nn.Module:
        head = LinearHead(self.info.feat_dim, self.info.num_classes)
        if self.params["oltr_compat"]:
            head.register_buffer("centres", torch.zeros(self.info.num_classes, self.info.feat_dim))
        return head

    def on_train_start(self, ctx: EngineContext) -> None:
        if self.params["oltr_compat"]:
            head = ctx.model.head
            train = ctx.outputs("train")
            head.centres.copy_(class_means(train["features"], train["labels"], self.info.num_classes))

    def loss(
        self, outputs: dict[str, torch.Tensor], targets: torch.Tensor, model: MethodModel
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        p = self.params
        ce = F.cross_entropy(at_least_float32(outputs["logits"]), targets)
        if p["oltr_compat"]:
            centres = model.head.centres
            intra, inter = range_loss_oltr(outputs["features"], targets, centres, float(p["margin"]))
        else:
            intra, inter = range_loss_paper(
                outputs["features"], targets, int(p["k"]), float(p["margin"]), bool(p["squared"])
            )
        loss = ce + float(p["weight"]) * (float(p["alpha"]) * intra + float(p["beta"]) * inter)
        return loss, {"ce": ce.detach(), "intra": intra.detach(), "inter": inter.detach()}

"""Classifier layers shared by several methods: cosine (FSLwF), normed (LDAM), cos-norm (OLTR).

Each layer maps features ``x`` [B, D] to logits [B, C]; :class:`ClassifierHead` wraps one
into the head interface of :mod:`oltr_bench.method` (``{"logits", "features"}``) and
names it ``fc``, as the stage-1 linear head does, so that stage-2 runs can copy ``head.fc.*``.
All layers keep the input dtype; zero vectors give zero similarities, never NaN.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

NORMALIZE_EPS = 1e-12
"""``F.normalize`` epsilon used by FSLwF and LDAM (a zero vector stays zero)."""


def cosine_similarity_matrix(x: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """``S[i, k] = x_i·w_k / (‖x_i‖ ‖w_k‖)`` with ``F.normalize`` (eps 1e-12) on both sides."""
    return F.normalize(x, dim=1, eps=NORMALIZE_EPS) @ F.normalize(weight, dim=1, eps=NORMALIZE_EPS).t()


class CosineLinear(nn.Module):
    """FSLwF's cosine classifier: ``s_k(x) = τ · (x̂·ŵ_k + b)`` with learnable τ and scalar b.

    Gidaris & Komodakis, "Dynamic Few-Shot Visual Learning without Forgetting", CVPR 2018,
    ``architectures/ClassifierWithFewShotGenerationModule.py``: weights ~ N(0, √(2/D)),
    ``scale_cls`` τ initialised to 10 and learnable, one bias b initialised to 0 *inside* the scale.
    ``forward`` takes optional weights so that generated (few-shot) weights can be scored too.
    """

    def __init__(self, in_features: int, out_features: int, scale: float = 10.0, learn_scale: bool = True):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(out_features, in_features) * math.sqrt(2.0 / in_features))
        self.scale = nn.Parameter(torch.tensor([float(scale)]), requires_grad=learn_scale)
        self.bias = nn.Parameter(torch.zeros(1))

    def forward(self, x: torch.Tensor, weight: torch.Tensor | None = None) -> torch.Tensor:
        w = self.weight if weight is None else weight
        return self.scale * (cosine_similarity_matrix(x, w) + self.bias)


class NormedLinear(nn.Module):
    """LDAM's ``NormedLinear``: ``z_k = x̂·ŵ_k`` (cosine similarity, no scale, no bias).

    Cao et al., NeurIPS 2019, kaidic/LDAM-DRW ``models/resnet_cifar.py``. The official weight is
    stored [D, C] and initialised ``uniform_(-1, 1).renorm_(2, 1, 1e-5).mul_(1e5)``, i.e. every
    class vector uniform in [-1, 1]^D and rescaled to unit norm; here it is stored [C, D] like
    ``nn.Linear`` with the same distribution. LDAM's scale s is applied by the method.
    """

    def __init__(self, in_features: int, out_features: int):
        super().__init__()
        w = torch.empty(out_features, in_features).uniform_(-1.0, 1.0)
        self.weight = nn.Parameter(F.normalize(w, dim=1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return cosine_similarity_matrix(x, self.weight)


def squash(x: torch.Tensor, kind: str = "code") -> torch.Tensor:
    """OLTR's norm squashing of each row of ``x``.

    ``"code"`` (official ``CosNorm_Classifier``): ``(‖x‖/(1+‖x‖)) · x/‖x‖ = x/(1+‖x‖)``;
    ``"paper"`` (OLTR Eq. 6): ``(‖x‖²/(1+‖x‖²)) · x/‖x‖ = ‖x‖·x/(1+‖x‖²)``.
    Written without the division by ‖x‖, so a zero row maps to zero with a finite gradient.
    """
    sq = (x * x).sum(1, keepdim=True)
    norm = sq.clamp_min(torch.finfo(x.dtype).tiny).sqrt()
    if kind == "code":
        return x / (1.0 + norm)
    if kind == "paper":
        return norm * x / (1.0 + sq)
    raise ValueError(f"squash must be 'code' or 'paper', got {kind!r}")


class CosNormLinear(nn.Module):
    """OLTR's cosine-norm classifier: ``logit_k = scale · squash(x)·ŵ_k`` (no bias).

    Official ``models/CosNormClassifier.py``: scale 16 (its ``margin=0.5`` argument is unused),
    weights U(-1/√D, 1/√D); squashing per :func:`squash` (``"code"`` by default).
    """

    def __init__(self, in_features: int, out_features: int, scale: float = 16.0, squash: str = "code"):
        super().__init__()
        bound = 1.0 / math.sqrt(in_features)
        self.weight = nn.Parameter(torch.empty(out_features, in_features).uniform_(-bound, bound))
        self.scale = float(scale)
        self.squash = squash

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        w = F.normalize(self.weight, dim=1, eps=NORMALIZE_EPS)
        return self.scale * (squash(x, self.squash) @ w.t())


class ClassifierHead(nn.Module):
    """``{"logits": fc(features), "features": features}`` for any classifier layer ``fc``."""

    def __init__(self, fc: nn.Module):
        super().__init__()
        self.fc = fc

    def forward(self, features: torch.Tensor, targets: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        return {"logits": self.fc(features), "features": features}

r"""OLTR: dynamic meta-embedding with modulated attention (Liu et al., CVPR 2019).

Stage 2 on the plain model, as the official code computes it. Direct feature (the backbone's
last map through :class:`~oltr_bench.models.attention.ModulatedAttention`, pooled, then the
backbone's ``fc_add`` = Linear + ReLU, OLTR's ``use_fc``; configured by ``model.feat_dim``):

.. math::

    v = \mathrm{ReLU}\big(W_{add}\,\mathrm{pool}(f + MA(f)\odot SA(f)) + b_{add}\big)

Meta-embedding with the memory M = class centroids c_1..c_C:

.. math::

    \gamma = \min_k \lVert v - c_k\rVert_2, \quad
    o = \mathrm{softmax}(W_{hal} v + b_{hal}), \quad
    e = \tanh(W_{sel} v + b_{sel}), \quad
    v^{meta} = \frac{s_r}{\gamma}\,\big(v + e \odot o^\top M\big)

Cosine-norm classifier (no bias, s = 16): ``logit_k = s · (‖x‖/(1+‖x‖)) · x̂·ŵ_k`` with
x = v^meta. Loss, on the *direct* feature v:

.. math::

    L = \mathrm{CE} + \lambda\,\Big(\underbrace{\tfrac{1}{2B}\textstyle\sum_i \lVert v_i - c_{y_i}\rVert^2}_{attract}
        + \mu\,\underbrace{\mathrm{clamp}\big(m - \tfrac{1}{BC}\textstyle\sum_i\sum_{k\ne y_i}\lVert v_i - c_k\rVert^2,\ 0,\ 10^6\big)}_{repel}\Big)

with λ = 0.01 (config weight of the centroid loss), μ = 0.01, m = 10. Open-set rejection uses
the max softmax of the logits (the engine's default ``known_score``).

Paper: Z. Liu, Z. Miao, X. Zhan, J. Wang, B. Gong, S. X. Yu, "Large-Scale Long-Tailed
Recognition in an Open World", CVPR 2019, https://arxiv.org/abs/1904.05160. Official
implementation: zhmiao/OpenLongTailRecognition-OLTR @ f50e375: ``models/MetaEmbeddingClassifier.py``,
``models/CosNormClassifier.py``, ``loss/DiscCentroidsLoss.py``, ``layers/ModulatedAttLayer.py``,
``models/ResNetFeature.py``, ``run_networks.py``, ``config/ImageNet_LT/stage_2_meta_embedding.py``.

Differences from the OLTR code: the options below (each defaults to the code's behaviour), and
the numerics of the run's profile: Places-LT's stage 2 (frozen body) trains as the official code
does (train-mode BatchNorm, augmentation every epoch) under the ``faithful`` profile, the default
on the named benchmarks; under ``fast`` (or ``standard`` with ``train.feature_cache``) it trains
on cached body outputs (eval-mode BatchNorm, one crop).

Where the code is followed rather than the paper (each behind an option where the paper differs):

- reachability scale s_r = 10 (``reachability_scale``; the paper writes 1/γ, i.e. 1);
- squashing ‖x‖/(1+‖x‖) (``squash: "code"``; the paper's Eq. 6 has ‖x‖²/(1+‖x‖²),
  ``squash: "paper"``; the authors call the paper's version a typo, issues #5, #14);
- the centroid loss acts on the direct feature v, not on v^meta (issue #19);
- the attract term has the official custom backward (:func:`centroid_attract`): the centroid
  gradient is ``Σ_{i:y_i=k}(c_k - v_i)/(1 + n_k)/B`` (center-loss style; n_k = count of class k
  in the batch) and is *not* multiplied by the loss weight λ, while the feature gradient is
  λ·(v - c_y)/B;
- the classifier reads the centroids without gradient (``centroids.data`` in the code); the
  centroids move only through the centroid loss, with their own SGD (lr 0.01, momentum 0.9,
  weight decay 5e-4, stepped on the same schedule), returned by ``extra_optimizers``;
- the centroids start as the class means of the direct features of the training set under the
  stage-2 network before training (evaluation mode and transform; the attention, and on
  ImageNet-LT ``fc_add``, are still random at that point, as in the code);
- the hallucinator starts from the stage-1 linear classifier: ``adapt_init_state`` maps the
  plain checkpoint's ``head.fc.weight``/``head.fc.bias`` to ``head.hallucinator.*``; the
  selector, the attention and the cos-norm weights start fresh; the backbone (``fc_add``
  included) is copied where the stage-1 checkpoint has it: ImageNet-LT's stage 1 has no
  ``fc_add`` (``use_fc=False``), so its stage-2 ``fc_add`` (``model.feat_dim: 512``) is new
  and random, Places-LT's is copied;
- ``freeze_backbone: true`` is the official Places-LT stage 2 (``fix: True`` with the name
  filter ``modulatedatt``/``fc``): every backbone parameter is frozen except ``fc_add``; the
  attention and the head train. In the code BatchNorm stays in training mode (its running
  statistics still move) and the images are augmented every epoch; with the default
  ``train.feature_cache: true`` the engine instead caches the body's last feature map once
  (BatchNorm in evaluation mode, evaluation transform: no augmentation) and trains the attention,
  ``fc_add`` and head on it, which the run manifest records. ``--set train.feature_cache=false``
  trains as the code does (every epoch through the frozen ResNet-152);
- the attention's effective official initialisation (see :mod:`oltr_bench.models.attention`,
  ``attention_init``).

Guards (the official code produces inf/NaN here): γ is clamped at 1e-6 (a feature equal to a
centroid gives s_r/1e-6 and finite gradients); a zero v^meta squashes to 0; squared distances
are clamped at 0; a class without training images starts with a zero centroid.

Under DDP the centroids are an ``nn.Parameter`` of the head, so their gradient is averaged
like any other. With ``sync_centroid_counts: true`` (default) the per-class batch counts n_k
are summed over processes before the custom backward; each process's centroid gradient is
then (1/B_local)·Σ_{its i: y_i=k}(c_k - v_i)/(1 + n_k^global), and the average over R processes
equals the single-process gradient of the global batch (R·B_local) exactly. Without the sync the
average uses per-process counts in the denominators.

Backbone requirements for the attention (``modulated_attention: true``): ``feature_map(x)``
-> [B, C, H, W], ``pool(map)`` -> [B, D] (with ``backbone(x) == pool(feature_map(x))``) and
``feature_map_shape`` = (C, H, W) for the configured input size.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn

from oltr_bench.method import DatasetInfo, EngineContext, Method, MethodModel
from oltr_bench.errors import OltrError
from oltr_bench.models.attention import ATTENTION_INITS, ModulatedAttention
from oltr_bench.models.functional import at_least_float32, class_means, safe_sqrt, squared_distances
from oltr_bench.models.heads import CosNormLinear
from oltr_bench.registry import METHODS

REACHABILITY_EPS = 1e-6
"""Smallest distance to the nearest centroid used in the reachability s_r/γ."""


class _CentroidAttract(torch.autograd.Function):
    @staticmethod
    def forward(ctx, features, labels, centroids, counts, weight):  # type: ignore[override]
        ctx.save_for_backward(features, labels, centroids, counts)
        ctx.weight = weight
        diff = features - centroids.index_select(0, labels)
        return weight * diff.pow(2).sum() / 2.0 / features.shape[0]

    @staticmethod
    def backward(ctx, grad_output):  # type: ignore[override]
        features, labels, centroids, counts = ctx.saved_tensors
        batch = features.shape[0]
        diff = centroids.index_select(0, labels) - features  # c_y - v
        grad_features = -grad_output * ctx.weight * diff / batch
        grad_centroids = torch.zeros_like(centroids).index_add_(0, labels, diff)
        grad_centroids = grad_output * grad_centroids / (1.0 + counts).unsqueeze(1) / batch
        return grad_features, None, grad_centroids, None, None


def centroid_attract(
    features: torch.Tensor,
    labels: torch.Tensor,
    centroids: torch.Tensor,
    weight: float = 1.0,
    counts: torch.Tensor | None = None,
) -> torch.Tensor:
    """``weight · Σ_i ‖v_i - c_{y_i}‖² / (2B)`` with OLTR's custom backward.

    ∂/∂v_i = g·weight·(v_i - c_{y_i})/B (the true gradient); ∂/∂c_k = g·Σ_{i:y_i=k}(c_k - v_i)/(1 + n_k)/B,
    where g is the incoming gradient (1 for a plain ``loss.backward()``) and ``counts`` = n
    (default: the class counts of ``labels``). The official ``DiscCentroidsLossFunc`` returns
    the unweighted value and its centroid gradient ignores g, the loss weight being applied
    outside; taking the weight as an argument keeps the centroid update independent of it
    while still following any outer scaling of the loss (AMP's GradScaler, accumulation).
    """
    if counts is None:
        counts = torch.bincount(labels, minlength=centroids.shape[0]).to(centroids)
    return _CentroidAttract.apply(features, labels, centroids, counts.to(centroids), float(weight))


def centroid_repel(
    features: torch.Tensor, labels: torch.Tensor, centroids: torch.Tensor, margin: float = 10.0
) -> torch.Tensor:
    """``clamp(m - Σ_i Σ_{k≠y_i} ‖v_i - c_k‖² / (B·C), 0, 1e6)`` (ordinary autograd, as in the code)."""
    d = squared_distances(features, centroids)
    d = d.masked_fill(F.one_hot(labels, centroids.shape[0]).bool(), 0.0)
    return (margin - d.sum() / d.numel()).clamp(0.0, 1e6)


def nearest_centroid_distance(v: torch.Tensor, memory: torch.Tensor) -> torch.Tensor:
    """γ_i = min_c ‖v_i − m_c‖, at least ``REACHABILITY_EPS`` (the denominator of the reachability).

    The nearest centroid comes from the expanded form (no [B, C, D] temporary); its distance from
    the difference, as the official ``torch.norm(x - c)``: the expanded form cancels in float32
    near a centroid whose norm is much larger than γ.
    """
    nearest = memory.index_select(0, squared_distances(v, memory).argmin(1))
    return safe_sqrt((v - nearest).pow(2).sum(1), REACHABILITY_EPS)


class MetaEmbeddingHead(nn.Module):
    """OLTR's ``MetaEmbedding_Classifier`` with the memory (centroids) as a parameter of the head."""

    def __init__(
        self,
        feat_dim: int,
        num_classes: int,
        reachability_scale: float = 10.0,
        cosnorm_scale: float = 16.0,
        squash: str = "code",
    ):
        super().__init__()
        self.hallucinator = nn.Linear(feat_dim, num_classes)
        self.selector = nn.Linear(feat_dim, feat_dim)
        self.cosnorm = CosNormLinear(feat_dim, num_classes, cosnorm_scale, squash)
        self.centroids = nn.Parameter(torch.zeros(num_classes, feat_dim))
        self.reachability_scale = float(reachability_scale)

    def meta_embedding(self, v: torch.Tensor) -> torch.Tensor:
        memory = self.centroids.detach().to(v)
        gamma = nearest_centroid_distance(v, memory)
        memory_feature = torch.softmax(self.hallucinator(v), dim=1) @ memory
        selector = torch.tanh(self.selector(v))
        return (self.reachability_scale / gamma).unsqueeze(1) * (v + selector * memory_feature)

    def forward(self, features: torch.Tensor, targets: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        with torch.autocast(features.device.type, enabled=False):
            v = at_least_float32(features)
            logits = self.cosnorm(self.meta_embedding(v))
        return {"logits": logits, "features": v}


class DMEModel(MethodModel):
    """Backbone map -> modulated attention -> the backbone's pool (with its ``fc_add`` + ReLU) -> meta-embedding head."""

    def __init__(self, backbone: nn.Module, head: nn.Module, attention: nn.Module | None):
        super().__init__(backbone, head)
        self.attention = attention

    def direct_feature(self, x: torch.Tensor, start: str = "images") -> torch.Tensor:
        """v from images, or from the body's cached last map (``start="map"``) or cached v (``"features"``)."""
        if start == "features":
            return x
        if start == "images" and self.attention is None:
            return self.backbone(x)  # any backbone, also one without feature_map/pool
        fmap = self.backbone.feature_map(x) if start == "images" else x
        if self.attention is not None:
            fmap = self.attention(fmap)
        return self.backbone.pool(fmap)

    def cache_level(self) -> str | None:
        level = super().cache_level()
        attention_trains = self.attention is not None and any(p.requires_grad for p in self.attention.parameters())
        return "map" if level == "features" and attention_trains else level

    def forward(self, x: torch.Tensor, targets: torch.Tensor | None = None, *, start: str = "images") -> dict[str, torch.Tensor]:
        return self.head(self.direct_feature(x, start), targets)


@METHODS.register("dme")
class DME(Method):
    """OLTR dynamic meta-embedding: modulated attention, centroid memory, reachability, cos-norm classifier."""

    stage = 2
    init_from = "plain"
    sampler = "class_aware"
    defaults: dict[str, Any] = {
        "reachability_scale": 10.0,
        "cosnorm_scale": 16.0,
        "squash": "code",
        "modulated_attention": True,
        "attention_init": "official",
        "freeze_backbone": False,
        "loss_weight": 0.01,
        "repel_weight": 0.01,
        "repel_margin": 10.0,
        "centroid_lr": 0.01,
        "centroid_momentum": 0.9,
        "centroid_weight_decay": 5e-4,
        "sync_centroid_counts": True,
    }

    def __init__(self, params: dict[str, Any], info: DatasetInfo):
        super().__init__(params, info)
        # Places-LT's frozen body: the engine may then train attention, fc_add and head on cached maps.
        self.frozen_backbone = bool(params["freeze_backbone"])
        if params["squash"] not in ("code", "paper"):
            raise OltrError(f"dme: params.squash must be 'code' or 'paper', got {params['squash']!r}")
        if params["attention_init"] not in ATTENTION_INITS:
            raise OltrError(
                f"dme: params.attention_init must be one of {', '.join(ATTENTION_INITS)}, got {params['attention_init']!r}"
            )

    def build_head(self) -> nn.Module:
        p = self.params
        return MetaEmbeddingHead(
            self.info.feat_dim,
            self.info.num_classes,
            float(p["reachability_scale"]),
            float(p["cosnorm_scale"]),
            p["squash"],
        )

    def build_model(self, backbone: nn.Module) -> MethodModel:
        p = self.params
        attention = None
        if p["modulated_attention"]:
            missing = [a for a in ("feature_map", "pool", "feature_map_shape") if not hasattr(backbone, a)]
            if missing:
                raise OltrError(
                    f"dme: the backbone {type(backbone).__name__} lacks {', '.join(missing)}, which the modulated "
                    "attention needs (the last feature map before pooling); set params.modulated_attention=false "
                    "to run DME without it"
                )
            attention = ModulatedAttention(*backbone.feature_map_shape, init=p["attention_init"])
        if p["freeze_backbone"]:
            for name, param in backbone.named_parameters():
                if not name.startswith("fc_add."):
                    param.requires_grad_(False)
        return DMEModel(backbone, self.build_head(), attention)

    def adapt_init_state(self, state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        weight = state.get("head.fc.weight")
        if weight is not None and weight.shape[1] != self.info.feat_dim:
            raise OltrError(
                f"dme initialises its hallucinator from the stage-1 classifier, which takes {weight.shape[1]}-d "
                f"features, but this model's direct feature is {self.info.feat_dim}-d; set model.feat_dim to "
                f"{weight.shape[1]} (OLTR: 512 in both stages)"
            )
        renamed = {}
        for key, value in state.items():
            if key.startswith("head.fc."):
                renamed["head.hallucinator." + key[len("head.fc.") :]] = value
            elif not key.startswith("head."):
                renamed[key] = value
        return renamed

    def param_groups(self, model: MethodModel, lr: dict[str, float]) -> list[dict[str, Any]]:
        in_head = {id(p) for p in model.head.parameters()}
        features = [p for p in model.parameters() if p.requires_grad and id(p) not in in_head]
        classifier = [p for n, p in model.head.named_parameters() if p.requires_grad and n != "centroids"]
        groups = [
            {"params": features, "lr": lr["features"], "name": "features"},
            {"params": classifier, "lr": lr["classifier"], "name": "classifier"},
        ]
        return [g for g in groups if g["params"]]

    def extra_optimizers(self, model: MethodModel) -> list[torch.optim.Optimizer]:
        p = self.params
        return [
            torch.optim.SGD(
                [model.head.centroids],
                lr=float(p["centroid_lr"]),
                momentum=float(p["centroid_momentum"]),
                weight_decay=float(p["centroid_weight_decay"]),
            )
        ]

    def on_train_start(self, ctx: EngineContext) -> None:
        train = ctx.outputs("train")
        head = ctx.model.head
        with torch.no_grad():
            head.centroids.copy_(class_means(train["features"].double(), train["labels"], self.info.num_classes))
        empty = int((torch.bincount(train["labels"], minlength=self.info.num_classes) == 0).sum())
        if empty:
            ctx.log(f"dme: {empty} classes have no training image; their centroids start at 0")

    embedding_name = "meta_embedding"

    def embedding(self, outputs: dict[str, torch.Tensor], model: MethodModel) -> torch.Tensor:
        """The dynamic meta-embedding v_meta (what the cosine classifier scores), not the direct feature."""
        with torch.autocast(outputs["features"].device.type, enabled=False):
            return model.head.meta_embedding(at_least_float32(outputs["features"]))

    def loss(
        self, outputs: dict[str, torch.Tensor], targets: torch.Tensor, model: MethodModel
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        p = self.params
        centroids = model.head.centroids
        v = at_least_float32(outputs["features"])
        ce = F.cross_entropy(at_least_float32(outputs["logits"]), targets)
        counts = torch.bincount(targets, minlength=self.info.num_classes).to(centroids)
        if p["sync_centroid_counts"] and dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
            dist.all_reduce(counts)
        weight = float(p["loss_weight"])
        attract = centroid_attract(v, targets, centroids, weight, counts)
        repel = centroid_repel(v, targets, centroids, float(p["repel_margin"]))
        loss = ce + attract + weight * float(p["repel_weight"]) * repel
        with torch.no_grad():
            attract_value = (v - centroids.index_select(0, targets)).pow(2).sum() / 2.0 / len(targets)
        return loss, {"ce": ce.detach(), "attract": attract_value, "repel": repel.detach()}

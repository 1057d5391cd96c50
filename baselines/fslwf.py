r"""Few-shot learning without forgetting, FSLwF (Gidaris & Komodakis, CVPR 2018), for the long tail.

Cosine classifier (both stages), with learnable scale τ (init 10) and bias b (init 0):

.. math::

    s_k(x) = \tau\,(\bar x^\top \bar w_k + b), \qquad \bar u = u / \lVert u\rVert

Attention-based weight generator for a novel class from its support features z_1..z_N:

.. math::

    w_{avg} = \frac1N \sum_i \bar z_i, \qquad
    \mathrm{Att}_{i,b} = \mathrm{softmax}_b\big(\gamma\, \overline{\phi_q \bar z_i}^\top \bar k_b\big), \qquad
    w_{att} = \frac1N \sum_i \sum_b \mathrm{Att}_{i,b}\, \bar w_b,

    w' = \phi_{avg} \odot w_{avg} + \phi_{att} \odot w_{att}

over the base classes b of the episode, with one learnable key k_b per class, φ_q = Linear(D, D)
initialised to I + 0.001·N(0, 1) (bias 0), γ learnable (init 30, the ImageNet configs; 10 in
the miniImageNet ones), φ_avg, φ_att learnable diagonal vectors initialised to 1.

Paper: S. Gidaris, N. Komodakis, "Dynamic Few-Shot Visual Learning without Forgetting",
CVPR 2018, https://arxiv.org/abs/1804.09458. Official implementation:
gidariss/FewShotWithoutForgetting @ 0efdc78, ``architectures/ClassifierWithFewShotGenerationModule.py``,
``algorithms/FewShot.py``, ``dataloader.py`` (``FewShotDataloader``), and the ImageNet configs
``config/imagenet_ResNet10CosineClassifier*.py``.

Two registered stages:

- ``fslwf_stage1``: backbone + cosine classifier trained with cross-entropy on all C classes
  (class-aware sampling, as every competitor in OLTR's Table 3). The official stage 1 sees
  only its base classes; the long-tail training set is the only data we have, so all classes
  are trained and the medium/few-shot weights are replaced after stage 2.
- ``fslwf`` (stage 2, from ``fslwf_stage1``, nothing trained by the engine): in ``fit`` the
  backbone is frozen and, as in the official ImageNet stage 2, works on precomputed features
  (``ctx.outputs("train")``, evaluation transform) with dropout 0.5 on them. Each episode:

  1. base classes = the many-shot classes (n_c > ``many_threshold`` = 100 in the dataset's
     training counts, the paper's definition and the ``oltr`` protocol's grouping; under
     ``--protocol oltr-code``, n_c ≥ 100, ImageNet-LT's 6 classes with exactly 100 images
     count as many-shot but get generated weights) with at least 2 of the training features ``fit``
     sees; a random ``fake_novel_fraction`` of them (0.643 = 250 of 389 in the official
     ImageNet config, at least 1, leaving at least 1 base class) become fake-novel classes,
     the rest are the episode's base classes;
  2. each fake-novel class draws ``shots + test_per_novel`` distinct training images: the first
     ``test_per_novel`` (6) are test images, the other ``shots`` (default 20, the largest
     official setting) are its support set (the official ImageNet models were trained per
     shot count 1/2/5/10/20). Our rule when the smallest base class has only m < shots +
     test_per_novel features (a ``--quick`` run sees at most 8 per class; skipped images):
     test_per_novel becomes min(test_per_novel, m - 1) and shots min(shots, m - test_per_novel),
     logged and kept in the method state (``episode``);
  3. ``base_test_per_novel`` × (#fake-novel) (3×, official ``nTestBase = 3·nKnovel``) base-class
     test images: class uniformly with replacement, image uniformly with replacement within the
     class (the official code draws images without replacement within a class; with more than
     100 images per base class the two differ rarely);
  4. the generator builds the fake-novel weights from the support features and the episode's
     base weights; cross-entropy over base + fake-novel logits on all test images; SGD
     (nesterov, momentum 0.9, weight decay 5e-4) on every classifier parameter (base weights,
     τ, b, keys, φ_q, γ, φ_avg, φ_att), learning rate by ``lr_schedule`` = [[4, 0.01],
     [6, 0.001]] (epoch e uses the first entry whose end epoch is > e; the official LUT),
     ``episodes_per_epoch`` = 4000 (:data:`QUICK_EPISODES` under ``--quick``).

  Afterwards every class that is not many-shot (medium and few) and has at least one training
  feature gets its weight generated from *all* its training features (no dropout) with all the
  many-shot classes as base; many-shot classes keep their learned weights; a class without
  training features keeps its stage-1 weight (the episodes' weight decay touches only the rows
  of the episode classes, the official base classifier). The result is an ordinary cosine classifier
  (``head.fc``) over all C classes, saved with the model.

Differences from the official code and OLTR's run of FSLwF (which is not published), with the
named option that follows the official first stage:

- First stage on all classes by default (``fslwf_stage1`` ``params.classes: all``): the long-tail
  training set is the only data, so every class trains and the medium/few-shot weights are
  replaced after stage 2. ``params.first_stage: base`` on ``fslwf`` (it sets ``params.classes:
  base`` on the stage-1 run it starts from, found or trained: :meth:`FSLwF.stage1_params`) trains
  the first stage as the official code does, on the base (many-shot) classes only: the loss is
  the cross-entropy over the base classes' logits, and images of other classes in a batch are left
  out of it (the batches are still drawn by the configured sampler, so a class-aware batch holds
  about #base/#classes base images; ``--set data.sampler=instance`` draws mostly base images);
  the classifier rows of the other classes keep their initial values until stage 2 generates them;
- stage-1 schedule: the dataset's plain stage-1 schedule with class-aware sampling (OLTR's Table-3
  protocol), not the official 100 epochs with a 400-image batch;
- shots: 20 for every class (the official models were trained per shot count 1/2/5/10/20);
- base-class test images drawn with replacement within a class (official: without).

Not followed: the official feature extractor drops its last ReLU (``userelu: False``); the
backbone here is the benchmark's shared one.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from oltr_bench.method import DatasetInfo, EngineContext, Method, MethodModel
from oltr_bench.errors import OltrError
from oltr_bench.models.functional import at_least_float32
from oltr_bench.models.heads import NORMALIZE_EPS, ClassifierHead, CosineLinear
from oltr_bench.protocols import MANY_THRESHOLD
from oltr_bench.registry import METHODS

FIRST_STAGES = ("all", "base")
"""FSLwF's first stage: on all classes (ours, the default) or on the base classes only (the official code)."""

QUICK_EPISODES = 4
"""Episodes per epoch under ``--quick`` (the engine's default ``quick.max_steps``): a smoke run of the same code."""


class AttentionWeightGenerator(nn.Module):
    """FSLwF's attention-based generator of classification weights from support features."""

    def __init__(self, feat_dim: int, num_classes: int, scale_att: float = 30.0):
        super().__init__()
        self.query = nn.Linear(feat_dim, feat_dim)
        with torch.no_grad():
            self.query.weight.copy_(torch.eye(feat_dim) + 0.001 * torch.randn(feat_dim, feat_dim))
            self.query.bias.zero_()
        self.scale_att = nn.Parameter(torch.tensor([float(scale_att)]))
        self.keys = nn.Parameter(torch.randn(num_classes, feat_dim) * (2.0 / feat_dim) ** 0.5)
        self.phi_avg = nn.Parameter(torch.ones(feat_dim))
        self.phi_att = nn.Parameter(torch.ones(feat_dim))

    def attention(self, support: torch.Tensor, base_ids: torch.Tensor) -> torch.Tensor:
        """Att [N, K_base]: softmax over the episode's base classes of γ·q̄_i·k̄_b."""
        z = F.normalize(support, dim=1, eps=NORMALIZE_EPS)
        q = F.normalize(self.query(z), dim=1, eps=NORMALIZE_EPS)
        k = F.normalize(self.keys[base_ids], dim=1, eps=NORMALIZE_EPS)
        return torch.softmax(self.scale_att * (q @ k.t()), dim=1)

    def forward(
        self,
        support: torch.Tensor,
        support_labels: torch.Tensor,
        num_novel: int,
        base_weight: torch.Tensor,
        base_ids: torch.Tensor,
    ) -> torch.Tensor:
        """Weights [num_novel, D] for novel classes 0..num_novel-1 from ``support`` [N, D] with those labels."""
        z = F.normalize(support, dim=1, eps=NORMALIZE_EPS)
        per_sample_att = self.attention(support, base_ids) @ F.normalize(base_weight, dim=1, eps=NORMALIZE_EPS)
        one_hot = F.one_hot(support_labels, num_novel).to(z)
        count = one_hot.sum(0).unsqueeze(1)
        if bool((count == 0).any()):
            raise ValueError("every novel class needs at least one support feature")
        w_avg = (one_hot.t() @ z) / count
        w_att = (one_hot.t() @ per_sample_att) / count
        return self.phi_avg * w_avg + self.phi_att * w_att


class FewShotCosineHead(nn.Module):
    """Cosine classifier ``fc`` over all classes plus the weight ``generator`` of stage 2."""

    def __init__(self, feat_dim: int, num_classes: int, scale_cls: float, scale_att: float):
        super().__init__()
        self.fc = CosineLinear(feat_dim, num_classes, scale_cls)
        self.generator = AttentionWeightGenerator(feat_dim, num_classes, scale_att)

    def forward(self, features: torch.Tensor, targets: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        return {"logits": self.fc(features), "features": features}


@METHODS.register("fslwf_stage1")
class FSLwFStage1(Method):
    """FSLwF stage 1: backbone + cosine classifier (scale 10, learnable), class-aware sampling."""

    sampler = "class_aware"
    defaults: dict[str, Any] = {"scale_cls": 10.0, "classes": "all", "many_threshold": MANY_THRESHOLD}

    def __init__(self, params: dict[str, Any], info: DatasetInfo):
        super().__init__(params, info)
        if params["classes"] not in FIRST_STAGES:
            raise OltrError(f"fslwf_stage1: params.classes must be one of {', '.join(FIRST_STAGES)}, got {params['classes']!r}")
        many = torch.tensor(info.train_counts) > int(params["many_threshold"])
        if params["classes"] == "base" and int(many.sum()) < 1:
            raise OltrError(f"fslwf_stage1: params.classes base needs a many-shot class (more than {params['many_threshold']} "
                            "training images); this dataset has none")
        self.base_ids = torch.nonzero(many).flatten() if params["classes"] == "base" else None
        # class -> its column among the base classes (-1: not a base class)
        self.base_slot = None
        if self.base_ids is not None:
            self.base_slot = torch.full((info.num_classes,), -1, dtype=torch.long)
            self.base_slot[self.base_ids] = torch.arange(len(self.base_ids))

    def build_head(self) -> nn.Module:
        return ClassifierHead(CosineLinear(self.info.feat_dim, self.info.num_classes, float(self.params["scale_cls"])))

    def loss(
        self, outputs: dict[str, torch.Tensor], targets: torch.Tensor, model: MethodModel
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        logits = at_least_float32(outputs["logits"])
        if self.base_slot is None:
            loss = F.cross_entropy(logits, targets)
            return loss, {"ce": loss.detach()}
        # base-only: cross-entropy over the base classes' logits, on the batch's base-class images
        slot = self.base_slot.to(targets.device)[targets]
        keep = slot >= 0
        base_logits = logits[:, self.base_ids.to(logits.device)]
        if not bool(keep.any()):
            loss = base_logits.sum() * 0.0
        else:
            loss = F.cross_entropy(base_logits[keep], slot[keep])
        return loss, {"ce": loss.detach()}


@METHODS.register("fslwf")
class FSLwF(Method):
    """FSLwF stage 2: attention-based weight generator trained on many-shot episodes, generates medium/few weights."""

    stage = 2
    init_from = "fslwf_stage1"
    trains = False
    frozen_backbone = True
    defaults: dict[str, Any] = {
        "scale_cls": 10.0,
        "scale_att": 30.0,
        "many_threshold": MANY_THRESHOLD,
        "first_stage": "all",
        "fake_novel_fraction": 0.643,
        "shots": 20,
        "test_per_novel": 6,
        "base_test_per_novel": 3,
        "dropout": 0.5,
        "episodes_per_epoch": 4000,
        "lr_schedule": [[4, 0.01], [6, 0.001]],
        "momentum": 0.9,
        "weight_decay": 5e-4,
    }

    def __init__(self, params: dict[str, Any], info: DatasetInfo):
        super().__init__(params, info)
        for key in ("shots", "test_per_novel", "base_test_per_novel", "episodes_per_epoch"):
            if int(params[key]) < 1:
                raise OltrError(f"fslwf: params.{key} must be >= 1, got {params[key]}")
        if params["first_stage"] not in FIRST_STAGES:
            raise OltrError(f"fslwf: params.first_stage must be one of {', '.join(FIRST_STAGES)}, got {params['first_stage']!r}")
        self.many = torch.tensor(info.train_counts) > int(params["many_threshold"])
        if int(self.many.sum()) < 2:
            raise OltrError(
                f"fslwf: needs at least 2 many-shot classes (more than {params['many_threshold']} training images); "
                f"this dataset has {int(self.many.sum())}"
            )
        self.history: list[dict[str, float]] = []
        self.episode: dict[str, Any] = {}

    @classmethod
    def stage1_params(cls, params: dict[str, Any]) -> dict[str, Any]:
        """The first stage this configuration starts from: all classes (default) or the base classes only,
        with the same many-shot threshold."""
        if params.get("first_stage", "all") == "all":
            return {}
        return {"classes": params["first_stage"], "many_threshold": params.get("many_threshold", MANY_THRESHOLD)}

    def build_head(self) -> nn.Module:
        p = self.params
        return FewShotCosineHead(
            self.info.feat_dim, self.info.num_classes, float(p["scale_cls"]), float(p["scale_att"])
        )

    def fit(self, ctx: EngineContext) -> None:
        head: FewShotCosineHead = ctx.model.head
        train = ctx.outputs("train")
        feats = train["features"].to(device=ctx.device, dtype=head.fc.weight.dtype)
        labels = train["labels"].to(ctx.device)
        by_class = _ClassIndex(labels, self.info.num_classes)
        self.episode = self.episode_plan(by_class.counts.cpu(), ctx.quick)
        if self.episode["clamped"]:
            ctx.log(
                f"fslwf: the smallest many-shot class has {self.episode['smallest']} training images here, fewer than "
                f"shots + test_per_novel = {int(self.params['shots']) + int(self.params['test_per_novel'])}; episodes use "
                f"{self.episode['shots']} shots and {self.episode['test_per_novel']} test images per fake-novel class"
            )
        self._train_generator(ctx, head, feats, by_class)
        self._generate(head, feats, labels, by_class.counts)

    def episode_plan(self, seen: torch.Tensor, quick: bool) -> dict[str, Any]:
        """Episode classes and sizes from the per-class counts of the features ``fit`` sees.

        The many-shot classes come from the dataset's training counts (the protocol's grouping);
        the features seen may be fewer (``--quick`` subsets, skipped images). Episodes draw from
        the many-shot classes with at least 2 features; with m features in the smallest of them,
        ``test_per_novel`` becomes min(test_per_novel, m - 1) and ``shots`` min(shots, m - test).
        Under ``--quick`` an epoch has at most :data:`QUICK_EPISODES` episodes.
        """
        p = self.params
        pool = torch.nonzero(self.many & (seen >= 2)).flatten()
        if len(pool) < 2:
            raise OltrError(
                f"fslwf: episodes need at least 2 many-shot classes with 2 or more training images; "
                f"the training features seen have {len(pool)}"
            )
        smallest = int(seen[pool].min())
        n_test = min(int(p["test_per_novel"]), smallest - 1)
        shots = min(int(p["shots"]), smallest - n_test)
        episodes = int(p["episodes_per_epoch"])
        return {
            "pool": pool.tolist(),
            "smallest": smallest,
            "shots": shots,
            "test_per_novel": n_test,
            "clamped": (shots, n_test) != (int(p["shots"]), int(p["test_per_novel"])),
            "episodes_per_epoch": min(episodes, QUICK_EPISODES) if quick else episodes,
        }

    def _train_generator(
        self, ctx: EngineContext, head: FewShotCosineHead, feats: torch.Tensor, by_class: "_ClassIndex"
    ) -> None:
        p = self.params
        schedule = [(int(end), float(lr)) for end, lr in p["lr_schedule"]]
        head.requires_grad_(True)  # the engine freezes the model of a method it does not train
        optimizer = torch.optim.SGD(
            head.parameters(),
            lr=schedule[0][1],
            momentum=float(p["momentum"]),
            weight_decay=float(p["weight_decay"]),
            nesterov=True,
        )
        base_all = torch.tensor(self.episode["pool"], dtype=torch.long, device=feats.device)
        episodes = self.episode["episodes_per_epoch"]
        n_fake = min(len(base_all) - 1, max(1, round(float(p["fake_novel_fraction"]) * len(base_all))))
        # Rows of classes outside the episodes are not in the official (base-only) classifier; they
        # keep their stage-1 values instead of shrinking under weight decay.
        outside = torch.ones(self.info.num_classes, dtype=torch.bool, device=feats.device)
        outside[base_all] = False
        kept = head.fc.weight.detach()[outside].clone()
        head.train()
        for epoch in range(schedule[-1][0]):
            lr = next(lr for end, lr in schedule if end > epoch)
            for group in optimizer.param_groups:
                group["lr"] = lr
            total = torch.zeros(())
            for _ in range(episodes):
                loss = self._episode_loss(head, feats, by_class, base_all, n_fake)
                optimizer.zero_grad()
                loss.backward()
                optimizer.step()
                total = total.to(loss.device) + loss.detach()  # summed on the device: no host sync per episode
            mean = float(total) / episodes
            self.history.append({"epoch": epoch, "lr": lr, "loss": mean})
            ctx.log(f"fslwf: episode epoch {epoch} lr {lr:g} loss {mean:.4f}")
        with torch.no_grad():
            head.fc.weight[outside] = kept
        head.requires_grad_(False)
        head.eval()

    def _episode_loss(
        self, head: FewShotCosineHead, feats: torch.Tensor, by_class: "_ClassIndex", base_all: torch.Tensor, n_fake: int
    ) -> torch.Tensor:
        p = self.params
        shots, n_test = self.episode["shots"], self.episode["test_per_novel"]
        shuffled = base_all[torch.randperm(len(base_all), device=base_all.device)]
        fake, base = shuffled[:n_fake].sort().values, shuffled[n_fake:].sort().values
        drawn = by_class.distinct(fake, n_test + shots)  # [n_fake, n_test + shots]
        novel_test, support = drawn[:, :n_test].flatten(), drawn[:, n_test:].flatten()
        novel_slot = torch.arange(n_fake, device=feats.device)
        base_slot = torch.randint(len(base), (int(p["base_test_per_novel"]) * n_fake,), device=feats.device)
        base_test = by_class.any_of(base[base_slot])
        test = torch.cat([base_test, novel_test])
        target = torch.cat([base_slot, len(base) + novel_slot.repeat_interleave(n_test)])
        dropout = float(p["dropout"])
        novel_w = head.generator(
            F.dropout(feats[support], dropout, training=True),
            novel_slot.repeat_interleave(shots),
            n_fake,
            head.fc.weight[base],
            base,
        )
        weight = torch.cat([head.fc.weight[base], novel_w])
        logits = head.fc(F.dropout(feats[test], dropout, training=True), weight)
        return F.cross_entropy(at_least_float32(logits), target)

    @torch.no_grad()
    def _generate(self, head: FewShotCosineHead, feats: torch.Tensor, labels: torch.Tensor, seen: torch.Tensor) -> None:
        """Weights of every class that is not many-shot and has training features, from all of them."""
        novel = torch.nonzero(~self.many.to(seen.device) & (seen > 0)).flatten()
        if len(novel) == 0:
            return
        slot = torch.full((self.info.num_classes,), -1, dtype=torch.long, device=labels.device)
        slot[novel] = torch.arange(len(novel), device=labels.device)
        support = slot[labels] >= 0
        base = torch.nonzero(self.many).flatten().to(labels.device)
        generated = head.generator(feats[support], slot[labels[support]], len(novel), head.fc.weight[base], base)
        head.fc.weight[novel] = generated.to(head.fc.weight)

    def state_dict(self) -> dict[str, Any]:
        return {"history": list(self.history), "episode": dict(self.episode)}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.history = list(state.get("history", []))
        self.episode = dict(state.get("episode", {}))


class _ClassIndex:
    """Training-sample indices grouped by class, padded to [C, max count], for batched sampling."""

    def __init__(self, labels: torch.Tensor, num_classes: int):
        order = torch.argsort(labels, stable=True)
        self.counts = torch.bincount(labels, minlength=num_classes)
        starts = torch.cumsum(self.counts, 0) - self.counts
        width = int(self.counts.max())
        position = torch.arange(width, device=labels.device)
        self.valid = position.unsqueeze(0) < self.counts.unsqueeze(1)
        flat = (starts.unsqueeze(1) + position.unsqueeze(0)).clamp_max(len(labels) - 1)
        self.table = order[flat]

    def distinct(self, classes: torch.Tensor, k: int) -> torch.Tensor:
        """[len(classes), k] sample indices, k distinct ones per class, uniformly at random."""
        keys = torch.rand(self.valid[classes].shape, device=classes.device).masked_fill(~self.valid[classes], 2.0)
        picks = keys.topk(k, dim=1, largest=False).indices
        return self.table[classes].gather(1, picks)

    def any_of(self, classes: torch.Tensor) -> torch.Tensor:
        """One uniformly random sample index of each entry of ``classes`` (with replacement)."""
        offset = (torch.rand(classes.shape, device=classes.device) * self.counts[classes]).long()
        return self.table[classes, offset.clamp_max(self.counts[classes] - 1)]

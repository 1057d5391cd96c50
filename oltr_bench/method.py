"""The interface every method implements (one subclass per file in ``baselines/``).

The engine owns data, devices, optimisation, checkpoints and evaluation; a method only says
what model it trains, what loss it minimises, and how it turns model outputs into predictions.

A method's model is a :class:`MethodModel`: ``backbone(x) -> features`` followed by
``head(features, targets) -> outputs``. ``outputs`` is a dict with at least ``"logits"``
([B, C]) and ``"features"`` (the embedding the head worked on). Keeping the backbone separate
lets the engine cache features for stages whose backbone is frozen.

Lifecycle (called by the engine, in order)::

    m = Method(cfg, info)
    model = m.build_model(backbone)          # nn.Module, device-agnostic (no .cuda())
    state = m.adapt_init_state(stage1_state) # stage 2 only: rename/drop keys, then copy those that exist
    m.on_train_start(ctx)                    # e.g. initialise centroids from class means
    for each epoch: m.on_epoch_start(epoch)  # 0-based; e.g. LDAM-DRW switches its class weights
        for each step: loss, parts = m.loss(outputs, targets, model)
    m.fit(ctx)                               # post-hoc fitting after training (OpenMax, tau choice)
    m.predict(outputs) -> {"logits"|"probs", optional "pred", "known_score"}
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

import torch
from torch import nn

from oltr_bench.errors import OltrError


class EngineContext(Protocol):
    """What the engine offers a method's hooks (``on_train_start``, ``fit``).

    ``outputs(split)`` runs the current model in eval mode with the evaluation transform over a
    split the method may see (``"train"`` or ``"val"``; never test or open) and returns the
    concatenated head outputs (``"logits"``, ``"features"``, ...) plus ``"labels"`` and
    ``"index"`` (the list positions), on the CPU, in list order. For a frozen-backbone method
    with the feature cache on, they are computed from the cached backbone features.

    ``model`` is the plain :class:`MethodModel`, never a DistributedDataParallel wrapper; the
    engine also passes it unwrapped to ``Method.loss``, ``param_groups`` and
    ``extra_optimizers``.

    Distributed runs (``world_size > 1``, one process per ``rank``): every rank calls the hooks;
    ``outputs(split)`` returns the outputs of the *whole* split on every rank (gathered), so a
    hook computes the same values everywhere. The engine also guarantees that after
    ``on_train_start`` and after ``fit`` every rank holds rank 0's model parameters and buffers
    and rank 0's ``Method.state_dict()`` (it broadcasts them), so state kept outside the model
    stays consistent too. Parameters (e.g. DME's centroids as an ``nn.Parameter`` in the head)
    get their gradients averaged over ranks like every other parameter.

    ``quick`` is True in a ``--quick`` run: ``outputs("train")`` then covers a small subset
    (``quick.train_per_class`` images per class, not ``info.train_counts``), and a method with
    its own optimisation loop in ``fit`` keeps it as short as the engine keeps its own.
    """

    model: "MethodModel"
    device: torch.device
    info: "DatasetInfo"
    rank: int
    world_size: int
    quick: bool

    def outputs(self, split: str) -> dict[str, torch.Tensor]: ...

    def log(self, message: str) -> None: ...


@dataclass(frozen=True)
class DatasetInfo:
    """What a method may know about the data: class count, per-class training counts, feature size."""

    num_classes: int
    train_counts: tuple[int, ...]
    feat_dim: int


class MethodModel(nn.Module):
    """``backbone`` (images -> feature vector) followed by ``head`` (features -> outputs dict)."""

    def __init__(self, backbone: nn.Module, head: nn.Module):
        super().__init__()
        self.backbone = backbone
        self.head = head

    def cache_level(self) -> str | None:
        """What the feature cache may store for this model as it will train: ``"features"`` when
        nothing before the head trains, ``"map"`` when only what follows the body's last map trains
        (here the backbone's ``fc_add``), None when the body trains. A subclass that puts trainable
        layers between the map and the head says so here, and its ``forward`` accepts ``start``."""
        trainable = [name for name, p in self.backbone.named_parameters() if p.requires_grad]
        if not trainable:
            return "features"
        if not any(name.startswith("body.") for name in trainable):
            return "map"
        return None

    def forward(self, x: torch.Tensor, targets: torch.Tensor | None = None, *, start: str = "images") -> dict[str, torch.Tensor]:
        """Head outputs for images, or for cached backbone outputs (``start="map"``: the body's
        last feature map; ``start="features"``: the feature vector), as the feature cache uses."""
        if start == "images":
            features = self.backbone(x)
        elif start == "map":
            features = self.backbone.pool(x)
        elif start == "features":
            features = x
        else:
            raise ValueError(f"start must be 'images', 'map' or 'features', not {start!r}")
        return self.head(features, targets)


class LinearHead(nn.Module):
    """``logits = W f + b`` (OLTR's DotProduct classifier)."""

    def __init__(self, feat_dim: int, num_classes: int):
        super().__init__()
        self.fc = nn.Linear(feat_dim, num_classes)

    def forward(self, features: torch.Tensor, targets: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        return {"logits": self.fc(features), "features": features}


class Method:
    """Base class of a training or post-hoc method.

    Class attributes a subclass sets:

    - ``stage``: 1 trains the backbone from the config's initialisation; 2 starts from a stage-1
      run of ``init_from`` and copies the checkpoint keys that exist (as the official code does).
    - ``init_from``: registry name of the stage-1 method a stage-2 method starts from.
    - ``defaults``: method hyper-parameters (the config section ``params``); ``--set params.x=v``
      is type-checked against these values.
    - ``sampler``: ``"instance"`` or ``"class_aware"`` (the config may override it).
    - ``frozen_backbone``: the backbone is not trained (``param_groups`` leaves it out), so the
      engine may train the head on cached features: the feature vectors when no backbone
      parameter trains, the body's last map when only the backbone's ``fc_add`` trains. (Only
      for models that keep :class:`MethodModel`'s ``forward``.)
    - ``trains``: False for purely post-hoc methods (nothing is optimised; ``fit`` does the work).

    A stage-2 method whose ``params`` choose how its stage-1 run trains (FSLwF's base-only first
    stage) says so in :meth:`stage1_params`.
    """

    stage: int = 1
    init_from: str | None = None
    defaults: dict[str, Any] = {}
    sampler: str = "instance"
    frozen_backbone: bool = False
    trains: bool = True

    def __init__(self, params: dict[str, Any], info: DatasetInfo):
        self.params = params
        self.info = info

    @classmethod
    def stage1_params(cls, params: dict[str, Any]) -> dict[str, Any]:
        """``params`` of the ``init_from`` run this stage-2 configuration needs (matched and, when
        trained, set with ``--set params.KEY=VALUE``); the default: none, the stage-1 method's own."""
        return {}

    # -- model -----------------------------------------------------------------------------
    def build_head(self) -> nn.Module:
        """The classifier head; the default is OLTR's linear (DotProduct) classifier."""
        return LinearHead(self.info.feat_dim, self.info.num_classes)

    def build_model(self, backbone: nn.Module) -> MethodModel:
        return MethodModel(backbone, self.build_head())

    # -- training --------------------------------------------------------------------------
    def loss(
        self, outputs: dict[str, torch.Tensor], targets: torch.Tensor, model: MethodModel
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor | float]]:
        """Total loss for one batch and its named parts for the training log (detached tensors:
        the engine reads them only when it writes a log record, so steps need no host sync)."""
        loss = nn.functional.cross_entropy(outputs["logits"], targets)
        return loss, {"ce": loss.detach()}

    def param_groups(self, model: MethodModel, lr: dict[str, float]) -> list[dict[str, Any]]:
        """Optimiser parameter groups: backbone at ``lr['features']``, head at ``lr['classifier']``."""
        groups = []
        if not self.frozen_backbone:
            groups.append({"params": [p for p in model.backbone.parameters() if p.requires_grad], "lr": lr["features"], "name": "features"})
        groups.append({"params": [p for p in model.head.parameters() if p.requires_grad], "lr": lr["classifier"], "name": "classifier"})
        return [g for g in groups if g["params"]]

    def extra_optimizers(self, model: MethodModel) -> list[torch.optim.Optimizer]:
        """Optimisers for state with its own update rule (e.g. DME's centroids); stepped with the main one.

        The engine gives each its own scheduler (``train.scheduler``) and scales its learning
        rates by the same linear factor as the main optimiser's when the global batch differs
        from ``train.reference_batch_size``. Parameters in no optimiser are frozen.
        """
        return []

    def adapt_init_state(self, state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """The stage-1 checkpoint (``model.state_dict()`` keys) as this method wants it copied.

        Stage 2 only. The engine calls this on the ``init_from`` run's state dict and then copies
        every returned key that exists in this method's model. The default copies everything;
        a method renames keys (DME's hallucinator starts from ``head.fc.*``) or drops them
        (cRT re-initialises its classifier).
        """
        return state

    def load_stage1(self, model: MethodModel, state: dict[str, torch.Tensor]) -> dict[str, list[str]]:
        """Initialise a stage-2 model from the stage-1 checkpoint's model state (see :func:`copy_matching`).

        Keys saved from a DataParallel/DDP wrapper (``module.`` prefix) are unwrapped first, so that
        :meth:`adapt_init_state` renames and drops by the model's own key names.
        """
        state = {key.removeprefix("module."): value for key, value in state.items()}
        return copy_matching(model, self.adapt_init_state(state))

    def on_train_start(self, ctx: EngineContext) -> None:
        """Hook before the first training step (``ctx`` is the engine's context)."""

    def on_epoch_start(self, epoch: int) -> None:
        """Hook at the start of every training epoch (``epoch`` counts from 0)."""

    def fit(self, ctx: EngineContext) -> None:
        """Post-hoc fitting after training, on train/val data only (never test)."""

    # -- inference -------------------------------------------------------------------------
    def predict(self, outputs: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Scores written to the predictions file: ``logits`` (or ``probs``), optionally ``pred`` and ``known_score``."""
        return {"logits": outputs["logits"]}

    embedding_name = "penultimate"
    """What :meth:`embedding` returns, recorded in embeddings files (SPEC.md §6)."""

    def embedding(self, outputs: dict[str, torch.Tensor], model: "MethodModel") -> torch.Tensor:
        """The method's own embedding of an image for face identification (``oltr-bench embed``);
        default: the penultimate features the head works on."""
        return outputs["features"]

    def state_dict(self) -> dict[str, Any]:
        """Fitted state that is not a model parameter (saved with checkpoints)."""
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        pass

    @classmethod
    def describe(cls) -> str:
        from oltr_bench.registry import first_line

        return first_line(cls)


def copy_matching(model: nn.Module, state: dict[str, torch.Tensor]) -> dict[str, list[str]]:
    """Copy every entry of ``state`` whose key exists in ``model``; return what was copied and what was not.

    This is how the official code initialises stage 2 from stage 1 (``init_weights``): keys the
    new model does not have are ignored (``ignored``), keys only the new model has keep their
    fresh initialisation (``fresh``). A key present in both with another shape is an error, as
    it is in the official code (``load_state_dict`` raises): copying the rest of that layer
    would leave it half initialised. A method that re-initialises such a layer on purpose drops
    its keys in :meth:`Method.adapt_init_state`.
    """
    own = model.state_dict()
    mismatched = [f"{k} {tuple(v.shape)} -> {tuple(own[k].shape)}" for k, v in state.items() if k in own and own[k].shape != v.shape]
    if mismatched:
        raise OltrError(
            f"the stage-1 checkpoint does not fit the stage-2 model: {len(mismatched)} keys change shape "
            f"(first: {mismatched[0]}); use a stage-1 run with the same model settings (--stage1 RUN or matching "
            "--set model.* overrides)"
        )
    copied = [k for k in state if k in own]
    own.update({k: state[k] for k in copied})
    model.load_state_dict(own)
    return {"copied": copied, "fresh": [k for k in own if k not in state], "ignored": [k for k in state if k not in own]}

"""Building a run from its config: the method and its model, the autocast precision, the seed.

:func:`check_buildable` is the check ``run`` makes before any run directory or stage-1 training
exists: the config's values (:meth:`~oltr_bench.config.schema.RunConfig.validate`), then what only
building shows (the data pipelines, the sampler, the backbone and its weights file, the method's
``params``, and one forward pass of the model at ``data.image_size``).
"""

from __future__ import annotations

import random

import numpy as np
import torch

from oltr_bench.config import RunConfig
from oltr_bench.data.samplers import make_stream
from oltr_bench.data.transforms import build_pipeline
from oltr_bench.errors import OltrError
from oltr_bench.method import DatasetInfo, Method, MethodModel
from oltr_bench.models.backbones import build_backbone
from oltr_bench.registry import METHODS
from oltr_bench.splits.format import SplitDir


def seed_everything(seed: int) -> None:
    torch.manual_seed(seed)
    np.random.seed(seed % 2**32)
    random.seed(seed)


def autocast_dtype(choice: str, device: torch.device) -> torch.dtype | None:
    """The autocast dtype of ``train.precision`` on ``device`` (None: fp32, no autocast)."""
    if choice == "bf16" or (choice == "auto" and device.type == "cuda"):
        return torch.bfloat16
    return None


def build_method(cfg: RunConfig, split: SplitDir) -> tuple[Method, MethodModel]:
    """The method of ``cfg`` and its freshly initialised model (backbone from ``cfg.model``)."""
    backbone = build_backbone(cfg.model)
    info = DatasetInfo(split.num_classes, tuple(split.train_counts), backbone.feat_dim)
    method = METHODS.get(cfg.method)(cfg.params, info)
    return method, method.build_model(backbone)


def check_buildable(cfg: RunConfig, split: SplitDir, *, quick: bool = False) -> tuple[Method, MethodModel]:
    """Fail on a config this engine cannot run, before any run directory or stage-1 training exists.

    Reads no image and no list but the split's manifest. Returns the method and its freshly
    initialised model (a DME attention sized for another ``model.input_size`` fails here).
    """
    cfg.validate(quick=quick)
    build_pipeline(cfg.data, train=True)
    build_pipeline(cfg.data, train=False)
    method, model = build_method(cfg, split)
    make_stream(cfg.data.sampler or method.sampler, [0], cfg.data.samples_per_class, 0)
    model.eval()
    size = cfg.data.image_size
    try:
        with torch.no_grad():
            model(torch.zeros(1, 3, size, size))
    except Exception as exc:  # noqa: BLE001 - any failure here is a model that cannot take the configured input
        raise OltrError(f"the {cfg.method} model cannot take data.image_size={size} inputs (model.input_size="
                        f"{cfg.model.input_size}): {type(exc).__name__}: {exc}. Set both to the same size") from None
    return method, model

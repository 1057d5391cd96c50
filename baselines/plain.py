"""Plain model: stage 1 of OLTR, softmax cross-entropy with instance-balanced sampling.

Formula: ``L = -(1/B) Σ_i log softmax(W f_i + b)_{y_i}`` with a linear (DotProduct) classifier.

Paper: Liu et al., "Large-Scale Long-Tailed Recognition in an Open World", CVPR 2019
(https://arxiv.org/abs/1904.05160), Table 3 "Plain Model".
Official implementation: zhmiao/OpenLongTailRecognition-OLTR, ``config/ImageNet_LT/stage_1.py``
(ResNet-10 from scratch, no sampler, SGD lr 0.1, 30 epochs, StepLR(10, 0.1)) and
``models/DotProductClassifier.py``.

Where we follow the code: the configuration after the fix of issue #2 (no class-aware sampler,
lr 0.1); ``use_fc=False`` for ImageNet-LT stage 1 (2019-12-19 change). Its checkpoint is what
every stage-2 method starts from.

Differences from the OLTR code: none in the protocol. The numerics follow the run's profile: the
``faithful`` profile (the default on the named benchmarks) trains in fp32 without TF32 as the
official code; ``fast`` (bf16, compile) does not.
"""

from oltr_bench.method import Method
from oltr_bench.registry import METHODS


@METHODS.register("plain")
class Plain(Method):
    """Stage-1 plain model: softmax cross-entropy, instance-balanced sampling (OLTR's baseline)."""

    stage = 1
    sampler = "instance"

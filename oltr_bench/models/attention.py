r"""OLTR's modulated attention on the backbone's last feature map (``ModulatedAttLayer``).

For a map f ∈ R^{B×C×H×W} with N = H·W positions and C' = C/2:

.. math::

    \theta, \phi, g = \mathrm{Conv}^{1\times1}_{C\to C'}(f), \qquad
    A = \mathrm{softmax}_{\text{keys}}(\theta^\top \phi) \in R^{N\times N}\ (\text{no } 1/\sqrt{d}), \qquad
    SA(f) = W_z\,(g A^\top)\ \ (W_z = \mathrm{Conv}^{1\times1}_{C'\to C}, \text{no bias}),

    MA(f) = \mathrm{softmax}_{N}\big(\mathrm{Linear}_{N C \to N}(\mathrm{vec}(f))\big), \qquad
    f^{att} = f + MA(f) \odot SA(f)

SA is the embedded-Gaussian non-local block (Wang et al., CVPR 2018); the spatial attention MA
is a linear layer over the whole map flattened in (C, H, W) order followed by a softmax over
the N positions, broadcast over channels.

Source: zhmiao/OpenLongTailRecognition-OLTR @ f50e375, ``layers/ModulatedAttLayer.py`` and
``models/ResNetFeature.py``. The official layer hard-codes 7×7 maps (224-pixel inputs); here
H and W are arguments.

Initialisation (``init``):

- ``"official"`` (default), what the official code effectively does: ``ModulatedAttLayer``
  initialises g/θ/φ with Kaiming-normal, zero biases and a zero ``conv_mask``, but the ResNet
  constructor builds the layer *before* its loop that redraws every ``nn.Conv2d`` weight from
  N(0, √(2/(k·k·out_channels))). All four 1×1 convolutions (``conv_mask`` included) therefore
  start from that normal law, the biases stay 0, and the attention branch is active from the
  first step. ``fc_spatial`` keeps PyTorch's default ``nn.Linear`` initialisation.
- ``"as_written"``: ``ModulatedAttLayer.init_weights`` as written (Kaiming-normal g/θ/φ,
  zero biases, zero ``conv_mask``): the block starts as the identity.
"""

from __future__ import annotations

import math

import torch
from torch import nn

ATTENTION_INITS = ("official", "as_written")


class ModulatedAttention(nn.Module):
    """``f + MA(f) ⊙ SA(f)`` on a [B, C, H, W] feature map (OLTR's ``ModulatedAttLayer``)."""

    def __init__(self, channels: int, height: int, width: int, init: str = "official"):
        super().__init__()
        if init not in ATTENTION_INITS:
            raise ValueError(f"init must be one of {ATTENTION_INITS}, got {init!r}")
        inter = channels // 2
        self.shape = (channels, height, width)
        self.g = nn.Conv2d(channels, inter, kernel_size=1)
        self.theta = nn.Conv2d(channels, inter, kernel_size=1)
        self.phi = nn.Conv2d(channels, inter, kernel_size=1)
        self.conv_mask = nn.Conv2d(inter, channels, kernel_size=1, bias=False)
        self.fc_spatial = nn.Linear(height * width * channels, height * width)
        with torch.no_grad():
            for conv in (self.g, self.theta, self.phi):
                nn.init.kaiming_normal_(conv.weight)
                conv.bias.zero_()
            self.conv_mask.weight.zero_()
            if init == "official":
                for conv in (self.g, self.theta, self.phi, self.conv_mask):
                    conv.weight.normal_(0.0, math.sqrt(2.0 / conv.out_channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, h, w = x.shape
        if (c, h, w) != self.shape:
            raise ValueError(f"modulated attention was built for maps {self.shape}, got {(c, h, w)}")
        g = self.g(x).flatten(2).transpose(1, 2)  # [B, N, C']
        theta = self.theta(x).flatten(2).transpose(1, 2)  # [B, N, C']
        phi = self.phi(x).flatten(2)  # [B, C', N]
        affinity = torch.softmax(theta @ phi, dim=-1)  # [B, N, N], softmax over keys
        y = (affinity @ g).transpose(1, 2).reshape(b, -1, h, w)
        self_attention = self.conv_mask(y)
        spatial = torch.softmax(self.fc_spatial(x.flatten(1)), dim=1).view(b, 1, h, w)
        return x + spatial * self_attention

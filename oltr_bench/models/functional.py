"""Small numerical helpers shared by several methods (one definition each)."""

from __future__ import annotations

import torch


def at_least_float32(t: torch.Tensor) -> torch.Tensor:
    """``t`` in float32 if it is a 16-bit float (losses are computed in fp32 or float64, never fp16)."""
    return t.float() if t.dtype in (torch.float16, torch.bfloat16) else t


def squared_distances(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """``D[i, j] = ‖a_i - b_j‖²`` as ``‖a_i‖² + ‖b_j‖² - 2 a_i·b_j``, clamped at 0.

    The expanded form needs no [N, M, D] temporary (the official OLTR code uses it for its
    centroid loss); rounding can make it slightly negative for equal vectors, hence the clamp.
    """
    d = (a * a).sum(1, keepdim=True) + (b * b).sum(1).unsqueeze(0) - 2.0 * (a @ b.t())
    return d.clamp_min(0.0)


def safe_sqrt(x: torch.Tensor, eps: float) -> torch.Tensor:
    """``sqrt(max(x, eps²))``: finite value and gradient at 0 (the gradient is 0 below eps²)."""
    return x.clamp_min(eps * eps).sqrt()


def class_means(features: torch.Tensor, labels: torch.Tensor, num_classes: int) -> torch.Tensor:
    """Per-class mean of ``features`` [N, D] ([num_classes, D]); a class without samples gets zeros."""
    sums = features.new_zeros(num_classes, features.shape[1]).index_add_(0, labels, features)
    counts = torch.bincount(labels, minlength=num_classes).to(features).clamp_min(1.0)
    return sums / counts.unsqueeze(1)

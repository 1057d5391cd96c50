"""Processes and devices: single process, or DistributedDataParallel under ``torchrun``.

``torchrun --nproc_per_node N [--nnodes M --rdzv_endpoint HOST:PORT] -m oltr_bench run ...``
sets ``RANK``, ``LOCAL_RANK`` and ``WORLD_SIZE``; :func:`setup` then joins the process group
(``nccl`` when the processes use GPUs, ``gloo`` on CPU) and gives each process
``cuda:<LOCAL_RANK>`` or the CPU. Without those variables everything runs in one process.

Collectives used by the engine: :func:`gather_rows` (every rank gets the rows of the whole
split, in order), :func:`all_mean`, :func:`broadcast_state` (module parameters and buffers
from rank 0), :func:`broadcast_object` and :func:`all_gather_object`.

BatchNorm statistics: with ``train.sync_bn`` (default) the statistics of a training batch are
computed over the whole global batch, so a run's result does not depend on the number of
processes. torch's ``SyncBatchNorm`` only runs on GPUs; :class:`GlobalBatchNorm` does the same
on CPU processes (gloo).
"""

from __future__ import annotations

import datetime
import os
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist
from torch import nn

from oltr_bench.errors import OltrError

# Long collectives wait for rank 0 building caches; a dead peer still fails within this time.
TIMEOUT = datetime.timedelta(minutes=60)


@dataclass(frozen=True)
class Dist:
    """Where this process stands: rank, world size and its device."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: torch.device = torch.device("cpu")
    backend: str | None = None

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def pick_device(choice: str = "auto", local_rank: int = 0) -> torch.device:
    """``auto``: ``cuda:<local_rank>`` if a GPU is visible, else the CPU."""
    if choice not in ("auto", "cpu", "cuda"):
        raise OltrError(f"--device {choice!r} is not known; expected auto, cpu or cuda")
    if choice == "cpu" or (choice == "auto" and not torch.cuda.is_available()):
        return torch.device("cpu")
    if not torch.cuda.is_available():
        raise OltrError("--device cuda was asked for but torch sees no CUDA GPU (torch.cuda.is_available() is False)")
    return torch.device("cuda", local_rank % torch.cuda.device_count())


def setup(device_choice: str = "auto") -> Dist:
    """Join the torchrun process group if there is one; otherwise a single process."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    device = pick_device(device_choice, local_rank)
    if world_size == 1:
        return Dist(device=device)
    if device.type == "cuda":
        torch.cuda.set_device(device)
    backend = "nccl" if device.type == "cuda" else "gloo"
    if not dist.is_initialized():
        dist.init_process_group(backend, timeout=TIMEOUT, **({"device_id": device} if device.type == "cuda" else {}))
    return Dist(dist.get_rank(), dist.get_world_size(), local_rank, device, backend)


def teardown(d: Dist) -> None:
    if d.enabled and dist.is_initialized():
        dist.destroy_process_group()


def _comm_device(d: Dist) -> torch.device:
    return d.device if d.backend == "nccl" else torch.device("cpu")


def barrier(d: Dist) -> None:
    if d.enabled:
        dist.barrier()


def all_mean(d: Dist, values: list[float]) -> list[float]:
    """Mean over ranks of each value (float64)."""
    if not d.enabled:
        return list(values)
    t = torch.tensor(values, dtype=torch.float64, device=_comm_device(d))
    dist.all_reduce(t)
    return (t / d.world_size).tolist()


def all_sum_int(d: Dist, value: int) -> int:
    if not d.enabled:
        return value
    t = torch.tensor([value], dtype=torch.int64, device=_comm_device(d))
    dist.all_reduce(t)
    return int(t.item())


def all_min_int(d: Dist, value: int) -> int:
    if not d.enabled:
        return value
    t = torch.tensor([value], dtype=torch.int64, device=_comm_device(d))
    dist.all_reduce(t, op=dist.ReduceOp.MIN)
    return int(t.item())


def gather_rows(d: Dist, rows: torch.Tensor) -> torch.Tensor:
    """Concatenate every rank's ``rows`` (first dimension may differ) in rank order, on every rank."""
    if not d.enabled:
        return rows
    dev = _comm_device(d)
    local = rows.to(dev)
    sizes = [torch.zeros(1, dtype=torch.int64, device=dev) for _ in range(d.world_size)]
    dist.all_gather(sizes, torch.tensor([local.shape[0]], dtype=torch.int64, device=dev))
    counts = [int(s.item()) for s in sizes]
    padded = torch.zeros((max(counts), *local.shape[1:]), dtype=local.dtype, device=dev)
    padded[: local.shape[0]] = local
    parts = [torch.empty_like(padded) for _ in range(d.world_size)]
    dist.all_gather(parts, padded)
    return torch.cat([p[:n] for p, n in zip(parts, counts)]).to(rows.device)


def broadcast_object(d: Dist, obj: Any) -> Any:
    """Rank 0's ``obj`` on every rank (pickled)."""
    if not d.enabled:
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=0, device=_comm_device(d))
    return box[0]


def all_gather_object(d: Dist, obj: Any) -> list[Any]:
    """Every rank's ``obj``, in rank order, on every rank (pickled)."""
    if not d.enabled:
        return [obj]
    out: list[Any] = [None] * d.world_size
    dist.all_gather_object(out, obj)
    return out


def broadcast_state(d: Dist, module: nn.Module) -> None:
    """Overwrite every parameter and buffer with rank 0's values."""
    if not d.enabled:
        return
    dev = _comm_device(d)
    with torch.no_grad():
        for tensor in [*module.parameters(), *module.buffers()]:
            buf = tensor.detach().to(dev)
            dist.broadcast(buf, src=0)
            if buf is not tensor:
                tensor.copy_(buf)


# -- BatchNorm over the global batch ---------------------------------------------------------
class _GlobalBatchNormFn(torch.autograd.Function):
    """Batch normalisation whose statistics are all-reduced over the process group (gloo)."""

    @staticmethod
    def forward(ctx, x, weight, bias, eps):
        dims = [0] + list(range(2, x.dim()))
        n = torch.tensor([x.numel() / x.shape[1]], dtype=x.dtype)
        total = n.clone()
        dist.all_reduce(total)
        mean = x.sum(dims)
        dist.all_reduce(mean)
        mean /= total
        shape = [1, -1] + [1] * (x.dim() - 2)
        centred = x - mean.view(shape)
        var = centred.pow(2).sum(dims)
        dist.all_reduce(var)
        var /= total
        invstd = torch.rsqrt(var + eps)
        xhat = centred * invstd.view(shape)
        ctx.save_for_backward(xhat, invstd, weight, total)
        ctx.mark_non_differentiable(mean, var)
        return xhat * weight.view(shape) + bias.view(shape), mean, var, total

    @staticmethod
    def backward(ctx, grad_out, _gm, _gv, _gt):
        xhat, invstd, weight, total = ctx.saved_tensors
        dims = [0] + list(range(2, xhat.dim()))
        shape = [1, -1] + [1] * (xhat.dim() - 2)
        grad_weight = (grad_out * xhat).sum(dims)
        grad_bias = grad_out.sum(dims)
        # The input gradient needs the sums over the whole global batch.
        sums = torch.stack([grad_bias, grad_weight])
        dist.all_reduce(sums)
        g = grad_out * weight.view(shape)
        gxhat_sum, gxhat_xhat_sum = sums[0] * weight, sums[1] * weight
        grad_x = (g - gxhat_sum.view(shape) / total - xhat * (gxhat_xhat_sum.view(shape) / total)) * invstd.view(shape)
        return grad_x, grad_weight, grad_bias, None


class GlobalBatchNorm(nn.modules.batchnorm._BatchNorm):
    """BatchNorm (any dimensionality) with statistics over all processes while training (CPU/gloo).

    Same parameters, buffers and state-dict keys as ``nn.BatchNorm*d``; outside training or
    without a process group it is plain BatchNorm.
    """

    def _check_input_dim(self, input: torch.Tensor) -> None:
        if input.dim() < 2:
            raise ValueError(f"expected at least 2D input, got {input.dim()}D")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not (self.training and dist.is_initialized() and dist.get_world_size() > 1):
            return super().forward(x)
        y, mean, var, total = _GlobalBatchNormFn.apply(x, self.weight, self.bias, self.eps)
        if self.track_running_stats:
            with torch.no_grad():
                self.num_batches_tracked.add_(1)
                m = self.momentum if self.momentum is not None else 1.0 / float(self.num_batches_tracked)
                unbiased = var * (total / (total - 1).clamp_min(1))
                self.running_mean.mul_(1 - m).add_(mean, alpha=m)
                self.running_var.mul_(1 - m).add_(unbiased, alpha=m)
        return y


def convert_sync_batchnorm(module: nn.Module, device: torch.device) -> nn.Module:
    """BatchNorm layers -> torch's SyncBatchNorm on GPUs, :class:`GlobalBatchNorm` on CPU."""
    if device.type == "cuda":
        return nn.SyncBatchNorm.convert_sync_batchnorm(module)
    if isinstance(module, nn.modules.batchnorm._BatchNorm) and not isinstance(module, GlobalBatchNorm):
        if not module.affine:
            raise OltrError("train.sync_bn on CPU needs affine BatchNorm layers; set train.sync_bn=false")
        new = GlobalBatchNorm(module.num_features, module.eps, module.momentum, module.affine, module.track_running_stats)
        # The same parameter and buffer objects, so optimisers built earlier keep working.
        new.weight, new.bias = module.weight, module.bias
        if module.track_running_stats:
            new.running_mean, new.running_var = module.running_mean, module.running_var
            new.num_batches_tracked = module.num_batches_tracked
        new.train(module.training)
        return new
    for name, child in module.named_children():
        setattr(module, name, convert_sync_batchnorm(child, device))
    return module

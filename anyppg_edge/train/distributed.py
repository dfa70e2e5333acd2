"""torch.distributed helpers for torchrun launches, plus a CPU-capable synchronised BatchNorm.

``init_distributed()`` reads the torchrun environment (``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``,
``MASTER_ADDR``/``MASTER_PORT``) and initialises the default process group: NCCL on CUDA, gloo on
CPU. Without those variables it does nothing and every helper answers as a single process.

BatchNorm under DDP: each rank would otherwise normalise with the statistics of its local shard,
which is not the model a single process trains on the global batch. :func:`convert_sync_batchnorm`
swaps BatchNorm layers for ``nn.SyncBatchNorm`` on CUDA and for :class:`DistributedBatchNorm1d` on
CPU (``nn.SyncBatchNorm`` refuses CPU tensors): batch statistics are all-reduced over every rank with
autograd-aware collectives, so forward, gradients and running statistics match one process on the
concatenated batch.
"""

from __future__ import annotations

import os
from datetime import timedelta

import torch
import torch.distributed as dist
import torch.distributed.nn.functional as dist_fn
from torch import nn


def is_dist() -> bool:
    return dist.is_available() and dist.is_initialized()


def world_size() -> int:
    return dist.get_world_size() if is_dist() else 1


def rank() -> int:
    return dist.get_rank() if is_dist() else 0


def local_rank() -> int:
    return int(os.environ.get("LOCAL_RANK", "0")) if is_dist() else 0


def is_main() -> bool:
    return rank() == 0


def barrier() -> None:
    if is_dist() and world_size() > 1:
        dist.barrier()


def init_distributed(backend: str | None = None, timeout_s: float = 1800.0) -> bool:
    """Initialise the default process group from torchrun's environment variables.

    Returns True when running distributed (already initialised, or initialised now). ``backend``
    defaults to ``nccl`` when CUDA is available and ``gloo`` otherwise.
    """
    if is_dist():
        return True
    if "RANK" not in os.environ or "WORLD_SIZE" not in os.environ:
        return False
    if backend is None:
        backend = "nccl" if torch.cuda.is_available() else "gloo"
    if backend == "nccl":
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
    dist.init_process_group(backend=backend, timeout=timedelta(seconds=timeout_s))
    return True


def cleanup_distributed() -> None:
    if is_dist():
        dist.destroy_process_group()


def all_gather_with_grad(x: torch.Tensor) -> torch.Tensor:
    """Concatenate ``x`` from every rank along dim 0 (rank order); gradients flow back to each rank's
    own shard, summed over the ranks' losses (``torch.distributed.nn.functional.all_gather``)."""
    if world_size() == 1:
        return x
    return torch.cat(dist_fn.all_gather(x.contiguous()), dim=0)


def mean_over_ranks(value: float) -> float:
    """Average a Python float over ranks (for logging)."""
    if world_size() == 1:
        return float(value)
    t = torch.tensor([float(value)], dtype=torch.float64)
    if dist.get_backend() == "nccl":
        t = t.cuda()
    dist.all_reduce(t)
    return float(t.item()) / world_size()


class DistributedBatchNorm1d(nn.BatchNorm1d):
    """BatchNorm1d whose training-mode statistics are computed over the batch of **all** ranks.

    Works on any backend that all-reduces (gloo on CPU included). Statistics are two-pass (global
    mean, then global mean squared deviation) and the sums go through autograd-aware all-reduces,
    so gradients equal those of one process on the concatenated batch. Outside training, or in a
    single process, it is a plain ``BatchNorm1d``.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not (self.training and is_dist() and world_size() > 1):
            return super().forward(x)
        dims = [0, 2] if x.dim() == 3 else [0]
        shape = [1, -1, 1] if x.dim() == 3 else [1, -1]
        count = torch.tensor([x.numel() // x.shape[1]], dtype=x.dtype, device=x.device)
        dist.all_reduce(count)
        n = count.item()
        mean = dist_fn.all_reduce(x.sum(dims)) / n
        centred = x - mean.view(shape)
        var = dist_fn.all_reduce((centred * centred).sum(dims)) / n  # biased, as BatchNorm normalises
        out = centred * torch.rsqrt(var.view(shape) + self.eps)
        if self.affine:
            out = out * self.weight.view(shape) + self.bias.view(shape)
        if self.track_running_stats:
            with torch.no_grad():
                self.num_batches_tracked.add_(1)
                factor = (
                    1.0 / float(self.num_batches_tracked) if self.momentum is None else self.momentum
                )
                unbiased = var * (n / max(n - 1, 1))
                self.running_mean.mul_(1 - factor).add_(mean.detach(), alpha=factor)
                self.running_var.mul_(1 - factor).add_(unbiased.detach(), alpha=factor)
        return out


def _convert_cpu(module: nn.Module) -> nn.Module:
    out = module
    if type(module) is nn.BatchNorm1d:
        out = DistributedBatchNorm1d(
            module.num_features, module.eps, module.momentum, module.affine, module.track_running_stats
        )
        out.load_state_dict(module.state_dict())
        out.train(module.training)
        for p_new, p_old in zip(out.parameters(), module.parameters(), strict=True):
            p_new.requires_grad_(p_old.requires_grad)
    for name, child in module.named_children():
        out.add_module(name, _convert_cpu(child))
    return out


def convert_sync_batchnorm(module: nn.Module, device: torch.device | str) -> nn.Module:
    """Make every BatchNorm of ``module`` use statistics over all ranks: ``nn.SyncBatchNorm`` on
    CUDA, :class:`DistributedBatchNorm1d` elsewhere. Keys of the ``state_dict`` are unchanged."""
    if torch.device(device).type == "cuda":
        return nn.SyncBatchNorm.convert_sync_batchnorm(module)
    return _convert_cpu(module)

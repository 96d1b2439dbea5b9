"""Process-group queries and collectives that are safe without a process group.

A leaf module (it imports only torch), so losses and methods that gather or reduce across processes
use the same rules as the engine without importing up the layers. ``engine/dist.py`` builds the
launch, sharding and setup on top of these.
"""

from __future__ import annotations

import torch
import torch.distributed as dist


def is_distributed() -> bool:
    return dist.is_available() and dist.is_initialized()


def rank() -> int:
    return dist.get_rank() if is_distributed() else 0


def world_size() -> int:
    return dist.get_world_size() if is_distributed() else 1


def is_main_process() -> bool:
    """Only rank 0 writes files, logs and progress bars."""
    return rank() == 0


def all_reduce_sum(tensor: torch.Tensor) -> torch.Tensor:
    """Sum ``tensor`` over processes in place (no-op without a process group); returns it."""
    if is_distributed():
        dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
    return tensor


def all_reduce_mean(tensor: torch.Tensor) -> torch.Tensor:
    """Average a floating ``tensor`` over processes in place (logged losses, hand-synced gradients)."""
    if is_distributed():
        dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
        tensor /= dist.get_world_size()
    return tensor


def all_gather_cat(x: torch.Tensor) -> torch.Tensor:
    """``x`` of every process concatenated along dim 0 (no gradient); ``x`` itself in a single process."""
    if world_size() == 1:
        return x
    parts = [torch.empty_like(x) for _ in range(world_size())]
    dist.all_gather(parts, x.contiguous())
    return torch.cat(parts, dim=0)

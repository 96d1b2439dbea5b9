"""The process-group facts the engine needs, safe without a process group.

Everything distributed goes through here (process-group setup, rank-0 writes, reductions,
sharding), so single-GPU and CPU runs never need ``torch.distributed`` initialised.

Launch follows torchrun's environment (``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``, ``MASTER_ADDR``,
``MASTER_PORT``): :func:`init_distributed` creates the default group (NCCL on CUDA, gloo on
CPU) only when ``WORLD_SIZE > 1``; :func:`shard_indices` splits an evaluation set without
DistributedSampler's padding, so every image is counted exactly once.
"""

from __future__ import annotations

import os

import torch
import torch.distributed as dist

from ladseg.errors import ConfigError
from ladseg.process_group import (  # noqa: F401 (the engine's one import point for these)
    all_gather_cat,
    all_reduce_mean,
    all_reduce_sum,
    is_distributed,
    is_main_process,
    rank,
    world_size,
)


def launched_as_main_process() -> bool:
    """Rank 0 of a torchrun launch (or a plain run), also after the process group is left."""
    return int(os.environ.get("RANK", "0")) == 0


def env_world_size() -> int:
    """The world size torchrun announced (1 when not launched by torchrun)."""
    return int(os.environ.get("WORLD_SIZE", "1"))


def local_rank() -> int:
    return int(os.environ.get("LOCAL_RANK", "0"))


def init_distributed(device: torch.device) -> tuple[torch.device, bool]:
    """Join torchrun's process group when ``WORLD_SIZE > 1``; returns (this rank's device, created).

    CUDA runs use NCCL and one GPU per process (``cuda:LOCAL_RANK``); CPU runs use gloo.
    ``created`` is True when this call made the group (the caller then destroys it).
    """
    if env_world_size() <= 1 or is_distributed():
        return device, False
    if not dist.is_available():  # pragma: no cover - builds without torch.distributed
        raise ConfigError("WORLD_SIZE > 1 but this PyTorch build has no torch.distributed")
    missing = [k for k in ("RANK", "MASTER_ADDR", "MASTER_PORT") if k not in os.environ]
    if missing:
        raise ConfigError(
            f"WORLD_SIZE={env_world_size()} but {', '.join(missing)} not set: launch with "
            "'torchrun --nproc_per_node=N -m ladseg train CONFIG'"
        )
    if device.type == "cuda":
        if local_rank() >= torch.cuda.device_count():
            raise ConfigError(
                f"LOCAL_RANK={local_rank()} but only {torch.cuda.device_count()} GPU(s) are visible; "
                "use --nproc_per_node <= the number of GPUs"
            )
        device = torch.device("cuda", local_rank())
        torch.cuda.set_device(device)
        dist.init_process_group("nccl", device_id=device)
    else:
        dist.init_process_group("gloo")
    return device, True


def destroy_distributed() -> None:
    """Leave the process group (no-op without one)."""
    if is_distributed():
        dist.destroy_process_group()


def all_true(flag: bool, device: torch.device) -> bool:
    """True when ``flag`` holds on every process (so all ranks stop together on a bad loss)."""
    if not is_distributed():
        return flag
    t = torch.tensor([0 if flag else 1], device=device)
    dist.all_reduce(t, op=dist.ReduceOp.SUM)
    return int(t.item()) == 0


def broadcast_buffers(module: torch.nn.Module, src: int = 0) -> None:
    """Copy ``src``'s buffers (BN running statistics) to every process.

    Without SyncBatchNorm each process updates its running statistics from its own batches;
    evaluating with rank 0's buffers everywhere makes the sharded evaluation use the network
    that rank 0 saves.
    """
    if not is_distributed():
        return
    for buf in module.buffers():
        dist.broadcast(buf.data, src)


def per_process_batch(global_batch: int, world: int | None = None) -> int:
    """The global ``data.batch_size`` split over processes; it must divide evenly."""
    world = world_size() if world is None else world
    if global_batch % world:
        raise ConfigError(
            f"data.batch_size={global_batch} is the global batch and must be divisible by the "
            f"{world} processes (per-process batch = batch_size / world_size)"
        )
    return global_batch // world


def shard_indices(n: int, rank_: int | None = None, world: int | None = None) -> list[int]:
    """Items ``rank, rank + world, ...`` of ``range(n)``: disjoint shards that cover every item once.

    Unlike DistributedSampler nothing is padded or repeated, so a confusion matrix summed over
    the shards equals the single-process one exactly (shards may differ in length by one).
    """
    rank_ = rank() if rank_ is None else rank_
    world = world_size() if world is None else world
    return list(range(rank_, n, world))

"""Data loaders: seeded shuffling, drop_last for training, DistributedSampler under torchrun.

Infinite iteration is the engine's job; with ``distributed=True`` it must call
``loader.sampler.set_epoch(epoch)`` so each epoch reshuffles. A distributed *validation* loader
uses DistributedSampler without dropping, which pads the last shard with repeated items.
"""

from __future__ import annotations

import random
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, DistributedSampler

from ladseg.errors import DatasetError


def collate(batch: list[dict[str, Any]]) -> dict[str, Any]:
    """Stack ``image`` and ``mask`` (all items must share a size) and list every other key."""
    if not batch:
        raise DatasetError("collate got an empty batch")
    out: dict[str, Any] = {}
    for key in batch[0]:
        values = [item[key] for item in batch]
        if key in ("image", "mask") and isinstance(values[0], torch.Tensor):
            shapes = {tuple(v.shape) for v in values}
            if len(shapes) > 1:
                raise DatasetError(
                    f"cannot batch {key}s of different sizes {sorted(shapes)}: crop them to one size "
                    "(training) or use batch size 1 (evaluation of full images)"
                )
            out[key] = torch.stack(values)
        else:
            out[key] = values
    return out


def _seed_worker(worker_id: int) -> None:
    """Give numpy and ``random`` in each worker a seed derived from the worker's torch seed."""
    seed = torch.initial_seed() % 2**32
    np.random.seed(seed)
    random.seed(seed)


def build_loader(
    dataset: Dataset,
    batch_size: int,
    train: bool,
    num_workers: int = 0,
    seed: int = 0,
    distributed: bool = False,
) -> DataLoader:
    """Training: shuffled by a generator seeded with ``seed``, incomplete last batch dropped.
    Evaluation: in order, nothing dropped."""
    if batch_size < 1:
        raise DatasetError(f"batch size must be >= 1, got {batch_size}")
    if train and len(dataset) < batch_size and not distributed:
        raise DatasetError(
            f"the training set has {len(dataset)} items, fewer than one batch of {batch_size} (drop_last would leave none)"
        )
    generator = torch.Generator().manual_seed(seed)
    sampler = DistributedSampler(dataset, shuffle=train, seed=seed, drop_last=train) if distributed else None
    return DataLoader(
        dataset,
        batch_size=batch_size,
        shuffle=train and sampler is None,
        sampler=sampler,
        drop_last=train,
        num_workers=num_workers,
        collate_fn=collate,
        generator=generator,
        worker_init_fn=_seed_worker if num_workers > 0 else None,
        persistent_workers=num_workers > 0,
    )

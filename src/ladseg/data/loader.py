"""Data loaders: seeded shuffling, drop_last for training, DistributedSampler under torchrun.

A training loader is built once per run and iterated once per epoch; the engine calls
``loader.sampler.set_epoch(epoch)`` before each epoch, which reshuffles deterministically
(:class:`EpochShuffle`, or DistributedSampler under torchrun: the order is drawn from
``seed + epoch``). Workers are persistent, so they are started once, not every epoch. Under
torchrun a *validation* loader reads only its process's shard (``engine/dist.py:shard_indices``,
no padding), so every image is scored exactly once.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, DistributedSampler, Sampler

from ladseg.errors import DatasetError, LadsegError

_WORKER_PREFIX = "Caught "  # how torch's ExceptionWrapper starts a re-raised worker error


def worker_error_message(exc: LadsegError) -> str:
    """The original message of a user error re-raised from a DataLoader worker.

    PyTorch re-raises a worker's exception as ``type(exc)("Caught ... Original Traceback ...")``,
    so the message would carry the worker's whole traceback; keep only the text after the
    final ``module.Class: `` line, i.e. what the dataset said.
    """
    text = str(exc)
    if not text.startswith(_WORKER_PREFIX) or "Original Traceback" not in text:
        return text
    cls = type(exc)
    marker = f"{cls.__module__}.{cls.__qualname__}: "
    at = text.rfind("\n" + marker)
    return text[at + 1 + len(marker) :].rstrip("\n") if at >= 0 else text


class SegLoader(DataLoader):
    """A DataLoader whose worker-raised :class:`LadsegError` keeps its one clean message."""

    def __iter__(self) -> Iterator[Any]:  # type: ignore[override]
        it = super().__iter__()
        while True:
            try:
                batch = next(it)
            except StopIteration:
                return
            except LadsegError as exc:
                clean = worker_error_message(exc)
                if clean == str(exc):
                    raise
                raise type(exc)(clean) from exc
            yield batch


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


class EpochShuffle(Sampler[int]):
    """A permutation of ``range(n)`` drawn from ``seed + epoch``; :meth:`set_epoch` picks the epoch.

    The draw is the one a ``DataLoader(shuffle=True, generator=Generator().manual_seed(seed +
    epoch))`` makes (its iterator takes one 64-bit base seed from the generator, then the
    permutation), so a loader built once reads the same order as one built every epoch did.
    """

    def __init__(self, n: int, seed: int = 0) -> None:
        self.n, self.seed, self.epoch = n, seed, 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return self.n

    def __iter__(self) -> Iterator[int]:
        generator = torch.Generator().manual_seed(self.seed + self.epoch)
        torch.empty((), dtype=torch.int64).random_(generator=generator)  # the old loader's base seed
        yield from torch.randperm(self.n, generator=generator).tolist()


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
    generator = torch.Generator().manual_seed(seed)  # the workers' base seed
    sampler: Sampler[int] | None = None
    if distributed:
        sampler = DistributedSampler(dataset, shuffle=train, seed=seed, drop_last=train)
    elif train:
        sampler = EpochShuffle(len(dataset), seed)
    return SegLoader(
        dataset,
        batch_size=batch_size,
        sampler=sampler,
        drop_last=train,
        num_workers=num_workers,
        collate_fn=collate,
        generator=generator,
        worker_init_fn=_seed_worker if num_workers > 0 else None,
        persistent_workers=num_workers > 0,
    )


def skip_batches(loader: Any, count: int) -> Any:
    """The same loader without its first ``count`` batches (indices dropped, no sample is read).

    The epoch's order comes from its sampler (seeded per epoch by ``set_epoch``), so the batches
    left are those an uninterrupted epoch reads after its first ``count``.
    """
    batches = list(loader.batch_sampler)[count:]
    return type(loader)(
        loader.dataset, batch_sampler=batches, num_workers=loader.num_workers, collate_fn=loader.collate_fn,
        worker_init_fn=loader.worker_init_fn, generator=loader.generator, pin_memory=loader.pin_memory,
        persistent_workers=loader.persistent_workers if loader.num_workers else False,
    )  # fmt: skip

"""Loaders: seeded shuffling, drop_last, collate, DistributedSampler, colorize."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
import torch.distributed as dist
from torch.utils.data import Dataset, DistributedSampler

from ladseg.data import build_loader, collate, colorize
from ladseg.errors import DatasetError


class Numbers(Dataset):
    """Item i: a 4x4 image filled with i, a mask of i % 3, name str(i)."""

    def __init__(self, n: int = 10, sizes: list[int] | None = None) -> None:
        self.n, self.sizes = n, sizes

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, i: int) -> dict:
        s = self.sizes[i] if self.sizes else 4
        return {"image": torch.full((3, s, s), float(i)), "mask": torch.full((s, s), i % 3), "name": str(i)}


def order(loader) -> list[str]:
    return [name for batch in loader for name in batch["name"]]


def test_train_loader_is_seeded_and_drops_last() -> None:
    ds = Numbers(10)
    a = order(build_loader(ds, batch_size=3, train=True, seed=1))
    b = order(build_loader(ds, batch_size=3, train=True, seed=1))
    c = order(build_loader(ds, batch_size=3, train=True, seed=2))
    assert a == b and a != c
    assert len(a) == 9 and len(set(a)) == 9  # one incomplete batch dropped, no repeats
    assert a != [str(i) for i in range(9)]


def test_val_loader_keeps_order_and_everything() -> None:
    loader = build_loader(Numbers(5), batch_size=2, train=False)
    batches = list(loader)
    assert [len(b["name"]) for b in batches] == [2, 2, 1]
    assert order(loader) == ["0", "1", "2", "3", "4"]
    assert batches[0]["image"].shape == (2, 3, 4, 4) and batches[0]["mask"].dtype == torch.int64


def test_collate_rejects_mixed_sizes_with_advice() -> None:
    with pytest.raises(DatasetError, match="batch size 1"):
        collate([Numbers(2, sizes=[4, 6])[0], Numbers(2, sizes=[4, 6])[1]])


def test_train_set_smaller_than_a_batch() -> None:
    with pytest.raises(DatasetError, match="fewer than one batch"):
        build_loader(Numbers(2), batch_size=4, train=True)


def test_distributed_uses_a_distributed_sampler(tmp_path: Path) -> None:
    dist.init_process_group("gloo", init_method=f"file://{tmp_path / 'pg'}", rank=0, world_size=1)
    try:
        loader = build_loader(Numbers(7), batch_size=2, train=True, seed=5, distributed=True)
        assert isinstance(loader.sampler, DistributedSampler) and loader.sampler.shuffle
        first = order(loader)
        loader.sampler.set_epoch(1)
        assert len(first) == 6 and order(loader) != first  # reshuffled for the new epoch
    finally:
        dist.destroy_process_group()


def test_colorize_maps_ids_and_ignore() -> None:
    palette = np.array([[1, 2, 3], [4, 5, 6]], dtype=np.uint8)
    out = colorize(np.array([[0, 1], [255, 0]]), palette)
    assert out.shape == (2, 2, 3) and out.dtype == np.uint8
    assert out[0, 1].tolist() == [4, 5, 6] and out[1, 0].tolist() == [224, 224, 192]
    with pytest.raises(DatasetError, match=r"\[2\]"):
        colorize(np.array([[2]]), palette)

"""Reliability test fixtures: one torch thread, a tiny 3-class folder dataset in tmp_path."""

from pathlib import Path

import pytest
import torch
from reliability_helpers import make_dataset


@pytest.fixture(autouse=True)
def _one_thread():
    """One intra-op thread: the machine is shared and the models are tiny."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture
def data_root(tmp_path: Path) -> Path:
    return make_dataset(tmp_path / "data")

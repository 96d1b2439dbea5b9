"""Engine test fixtures: a tiny 3-class folder dataset in tmp_path."""

from pathlib import Path

import pytest
import torch
from engine_helpers import make_folder_dataset


@pytest.fixture(autouse=True)
def _one_thread():
    """One intra-op thread: on a shared, busy CPU two spinning threads made steps ~30x slower."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture
def tiny_root(tmp_path: Path) -> Path:
    return make_folder_dataset(tmp_path / "data")

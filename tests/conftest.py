"""Shared test settings and fixtures: one CPU thread, a fixed seed, the tiny folder dataset.

Test helpers shared across folders live in ``tests/tiny_data.py`` (importable from every test:
this folder is on the path because this conftest is in it).
"""

import os
from pathlib import Path

# Under shared CPU load, OpenMP threads that busy-wait cost more than they compute.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import pytest  # noqa: E402
import torch  # noqa: E402
from tiny_data import make_folder_dataset  # noqa: E402


@pytest.fixture(autouse=True)
def _seed() -> None:
    torch.manual_seed(0)


@pytest.fixture(autouse=True)
def _one_thread():
    """One intra-op thread: on a shared, busy CPU two spinning threads made steps ~30x slower, and
    the test models are tiny."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture
def tiny_root(tmp_path: Path) -> Path:
    """The tiny 3-class folder dataset (4 train, 2 val images of 32 x 32) in ``tmp_path/data``."""
    return make_folder_dataset(tmp_path / "data")

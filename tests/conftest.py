"""Shared test settings: small CPU work, deterministic seeds."""

import os

# Under shared CPU load, OpenMP threads that busy-wait cost more than they compute.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import pytest  # noqa: E402
import torch  # noqa: E402

torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))


@pytest.fixture(autouse=True)
def _seed() -> None:
    torch.manual_seed(0)

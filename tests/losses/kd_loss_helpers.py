"""Helpers for the distillation-loss tests (imported by the test files): hand-made SegOutputs, small settings."""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from ladseg.models.segmentor import SegOutput

#: memory sizes small enough for CPU tests (CIRKD's are 20000 / 2000 / 4096 / 1024)
SMALL_MEMORY: dict[str, Any] = {
    "pixel_memory_size": 32,
    "region_memory_size": 8,
    "pixel_contrast_size": 64,
    "region_contrast_size": 16,
}

#: every loss registered by a ``losses/kd_*.py`` module, with parameters for the tests
OWN_LOSSES: dict[str, dict[str, Any]] = {
    "at": {},
    "fitnets": {},
    "cwd_feature": {},
    "dist": {},
    "skd": {},
    "ifvd": {},
    "cirkd_minibatch": {},
    "cirkd_memory": SMALL_MEMORY,
    "cirkd": SMALL_MEMORY,
}


def seg(features: Tensor, logits: Tensor) -> SegOutput:
    return SegOutput(logits=logits, features=features)


def random_pair(
    n: int = 2,
    cs: int = 6,
    ct: int = 10,
    k: int = 4,
    hs: int = 8,
    ht: int = 16,
    grad: bool = True,
) -> tuple[SegOutput, SegOutput, Tensor]:
    """Student and teacher outputs of different widths and sizes, and a mask with ignore pixels."""
    s = seg(torch.randn(n, cs, hs, hs, requires_grad=grad), torch.randn(n, k, hs, hs, requires_grad=grad))
    # the teacher's tensors require grad on purpose: a loss must never send gradients into them
    t = seg(torch.randn(n, ct, ht, ht, requires_grad=True), torch.randn(n, k, ht, ht, requires_grad=True))
    mask = torch.randint(0, k, (n, 4 * hs, 4 * hs))
    mask[:, :5] = 255
    return s, t, mask

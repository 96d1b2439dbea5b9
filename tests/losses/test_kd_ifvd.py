"""IFVD: pixel-to-prototype cosine maps; ignore pixels contribute 0 (and optionally leave the mean)."""

from __future__ import annotations

import math

import pytest
import torch
from kd_loss_helpers import seg

from ladseg.losses import build_loss


def _case(third_label: int, **params: object) -> float:
    # student pixels (1,0), (0,1) of class 0 -> prototype (.5,.5), cos 1/sqrt2 each; pixel 3 alone in its class
    s = torch.tensor([[1.0, 0.0, 1.0], [0.0, 1.0, 1.0]]).reshape(1, 2, 1, 3)
    t = torch.tensor([[1.0, 1.0, 2.0], [0.0, 0.0, 0.0]]).reshape(1, 2, 1, 3)  # teacher: cos 1 everywhere
    mask = torch.tensor([[[0, 0, third_label]]])
    loss = build_loss("ifvd", 2, 2, 2, **params)
    return loss(seg(s, s), seg(t, t), mask).item()


def test_hand_computed_with_and_without_ignore() -> None:
    d2 = (1 - 1 / math.sqrt(2)) ** 2
    assert _case(1) == pytest.approx(2 * d2 / 3, rel=1e-5)  # 3 valid pixels, the third contributes 0
    assert _case(255) == pytest.approx(2 * d2 / 3, rel=1e-5)  # ignore contributes 0, counts (CIRKD)
    assert _case(255, exclude_ignore=True) == pytest.approx(2 * d2 / 2, rel=1e-5)  # left out of the mean


def test_labels_are_downsampled_to_the_student_grid_and_all_ignore_gives_zero() -> None:
    s, t = torch.randn(2, 4, 4, 4, requires_grad=True), torch.randn(2, 8, 8, 8)
    loss = build_loss("ifvd", 4, 8, 3)
    mask = torch.randint(0, 3, (2, 16, 16))
    assert loss(seg(s, s[:, :3]), seg(t, t[:, :3]), mask).item() > 0
    zero = loss(seg(s, s[:, :3]), seg(t, t[:, :3]), torch.full((2, 16, 16), 255))
    assert zero.item() == 0.0
    zero.backward()  # still differentiable (DDP needs a graph)

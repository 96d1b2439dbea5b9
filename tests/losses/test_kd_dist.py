"""DIST: Pearson relations over classes (per pixel) and over pixels (per class)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from kd_loss_helpers import seg

from ladseg.losses import build_loss


def test_two_pixel_hand_case() -> None:
    # class-0 probabilities: student (0.8, 0.3), teacher (0.6, 0.9)
    # inter: pixel 1 agrees (+1), pixel 2 disagrees (-1) -> 1 - 0 = 1
    # intra: both classes move in opposite directions (-1) -> 1 - (-1) = 2;  total 3
    ps = torch.tensor([[0.8, 0.3], [0.2, 0.7]]).reshape(1, 2, 1, 2)
    pt = torch.tensor([[0.6, 0.9], [0.4, 0.1]]).reshape(1, 2, 1, 2)
    loss = build_loss("dist", 4, 4, 2)
    f = torch.zeros(1, 4, 1, 2)
    assert loss(seg(f, ps.log()), seg(f, pt.log()), torch.zeros(1, 1, 2)).item() == pytest.approx(
        3.0, abs=1e-5
    )


def test_matches_numpy_corrcoef() -> None:
    s, t = torch.randn(2, 5, 3, 4), torch.randn(2, 5, 3, 4)
    tau, beta, gamma = 2.0, 1.0, 0.5
    ps = torch.softmax(s / tau, 1).permute(0, 2, 3, 1).reshape(-1, 5).double().numpy()
    pt = torch.softmax(t / tau, 1).permute(0, 2, 3, 1).reshape(-1, 5).double().numpy()
    inter = 1 - np.mean([np.corrcoef(a, b)[0, 1] for a, b in zip(ps, pt, strict=True)])
    intra = 1 - np.mean([np.corrcoef(a, b)[0, 1] for a, b in zip(ps.T, pt.T, strict=True)])
    expected = tau**2 * (beta * inter + gamma * intra)
    loss = build_loss("dist", 1, 1, 5, tau=tau, beta=beta, gamma=gamma)
    f = torch.zeros(2, 1, 3, 4)
    assert loss(seg(f, s), seg(f, t), torch.zeros(2, 3, 4)).item() == pytest.approx(expected, rel=1e-4)


def test_teacher_at_another_resolution_is_resized() -> None:
    # a teacher at twice the student's resolution is resized, not rejected
    s, t = torch.randn(1, 3, 4, 4), torch.randn(1, 3, 8, 8)
    loss = build_loss("dist", 1, 1, 3)
    out = loss(seg(torch.zeros(1, 1, 4, 4), s), seg(torch.zeros(1, 1, 8, 8), t), torch.zeros(1, 4, 4))
    assert torch.isfinite(out) and out.item() > 0

"""AT, FitNets and feature CWD against their formulas."""

from __future__ import annotations

import pytest
import torch
from kd_loss_helpers import seg
from torch import nn

from ladseg.losses import build_loss


def test_at_hand_computed_case() -> None:
    # student attention (1,0,0,0) after normalisation, teacher (.5,.5,.5,.5): squared diff 1, mean 1/4
    s = torch.tensor([[[[1.0, 0.0], [0.0, 0.0]]]])
    t = torch.ones(1, 1, 2, 2)
    loss = build_loss("at", 1, 1, 2)
    assert loss(seg(s, s), seg(t, t), torch.zeros(1, 2, 2)).item() == pytest.approx(0.25)


def test_at_formula_with_channel_mean_and_power() -> None:
    s, t = torch.randn(2, 3, 4, 5), torch.randn(2, 7, 4, 5)
    for p in (1.0, 2.0, 4.0):
        a_s = (s.abs() ** p).mean(1).flatten(1)
        a_t = (t.abs() ** p).mean(1).flatten(1)
        a_s, a_t = a_s / a_s.norm(dim=1, keepdim=True), a_t / a_t.norm(dim=1, keepdim=True)
        expected = ((a_s - a_t) ** 2).mean()
        got = build_loss("at", 3, 7, 2, p=p)(seg(s, s[:, :2]), seg(t, t[:, :2]), torch.zeros(2, 4, 5))
        assert got.item() == pytest.approx(expected.item(), rel=1e-5)


def test_fitnets_adapter_and_mse() -> None:
    loss = build_loss("fitnets", 4, 6, 2, bn=True)
    conv, bn = loss.adapter[0], loss.adapter[1]
    assert isinstance(conv, nn.Conv2d) and conv.kernel_size == (1, 1) and isinstance(bn, nn.BatchNorm2d)
    s, t = torch.randn(2, 4, 8, 8), torch.randn(2, 6, 8, 8)
    expected = ((loss.adapter(s) - t) ** 2).mean()
    assert loss(seg(s, s[:, :2]), seg(t, t[:, :2]), torch.zeros(2, 8, 8)).item() == pytest.approx(
        expected.item(), rel=1e-5
    )
    assert isinstance(build_loss("fitnets", 6, 6, 2).adapter, nn.Identity)
    assert isinstance(build_loss("fitnets", 6, 6, 2, adapter=True).adapter, nn.Sequential)


def test_fitnets_resizes_teacher_to_student() -> None:
    loss = build_loss("fitnets", 3, 3, 2)
    t = torch.randn(1, 3, 4, 4)
    s = torch.nn.functional.interpolate(t, size=(8, 8), mode="bilinear", align_corners=True)
    assert loss(seg(s, s[:, :2]), seg(t, t[:, :2]), torch.zeros(1, 8, 8)).item() < 1e-10


def test_cwd_feature_formula() -> None:
    tau = 4.0
    loss = build_loss("cwd_feature", 5, 3, 2, tau=tau)
    assert isinstance(loss.adapter, nn.Sequential) and loss.adapter[0].bias is None
    s, t = torch.randn(2, 5, 3, 4), torch.randn(2, 3, 3, 4)
    a = loss.adapter(s)
    expected = 0.0
    for n in range(2):
        for c in range(3):
            ps = torch.softmax(a[n, c].flatten() / tau, 0)
            pt = torch.softmax(t[n, c].flatten() / tau, 0)
            expected += (pt * (pt.log() - ps.log())).sum()
    expected = expected * tau**2 / (2 * 5)  # N x the student's width (CIRKD); the teacher's is an option
    got = loss(seg(s, s[:, :2]), seg(t, t[:, :2]), torch.zeros(2, 3, 4))
    assert got.item() == pytest.approx(expected.item(), rel=1e-5)

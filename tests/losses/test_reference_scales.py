"""The baselines' loss scales equal the reference's (CIRKD) on the same tensors, ratio 1.000 (issue 14, items 10-12).

Each ``_cirkd_*`` below re-states the formula of CIRKD's criterion (``losses/kd.py``, ``ifvd.py``,
``cwd.py``, ``fitnet.py``) in a few lines of plain torch, independently of ladseg's code; the other
normalisation stays available as an option and is checked to differ by the expected factor.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from kd_loss_helpers import seg
from torch import nn

from ladseg.losses import build_loss

N, K, H, W = 2, 5, 6, 7


def _mask(seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    mask = torch.randint(0, K, (N, H, W), generator=g)
    mask[:, :2] = 255  # about a third ignore, as in a VOC crop
    return mask


def _cirkd_kd(s: torch.Tensor, t: torch.Tensor, tau: float) -> torch.Tensor:
    rows_s = s.permute(0, 2, 3, 1).reshape(-1, s.shape[1])
    rows_t = t.permute(0, 2, 3, 1).reshape(-1, t.shape[1])
    kl = F.kl_div(F.log_softmax(rows_s / tau, 1), F.softmax(rows_t / tau, 1), reduction="batchmean")
    return kl * tau**2


def _cirkd_ifv(fs: torch.Tensor, ft: torch.Tensor, target: torch.Tensor, classes: int) -> torch.Tensor:
    def centred(f: torch.Tensor) -> torch.Tensor:
        lab = target[:, None].float().expand(f.shape)
        out = f.clone()
        for i in range(classes):
            m = (lab == i).float()
            mean = (m * f).sum((-1, -2)) / (m.sum((-1, -2)) + 1e-6)
            out = (1 - m) * out + m * mean[..., None, None]
        return out

    cos = nn.CosineSimilarity(dim=1)
    return F.mse_loss(cos(fs, centred(fs)), cos(ft, centred(ft)))


def _cirkd_cwd(fs: torch.Tensor, ft: torch.Tensor, conv: nn.Module, tau: float) -> torch.Tensor:
    n, c = fs.shape[:2]  # read before the adapter: the student's width
    s = conv(fs) if fs.shape[1] != ft.shape[1] else fs
    ps = F.softmax(s.flatten(2) / tau, -1)
    pt = F.softmax(ft.flatten(2) / tau, -1)
    return F.kl_div(ps.log(), pt, reduction="sum") / (n * c) * tau**2


def _ratio(a: torch.Tensor, b: torch.Tensor) -> float:
    return round(a.item() / b.item(), 3)


def test_kd_averages_over_all_pixels_as_cirkd() -> None:
    g = torch.Generator().manual_seed(1)
    s, t = torch.randn(N, K, H, W, generator=g), torch.randn(N, K, H, W, generator=g)
    mask = _mask()
    for tau in (1.0, 4.0):
        ours = build_loss("kd", 8, 8, K, tau=tau)(seg(s, s), seg(t, t), mask)
        assert _ratio(ours, _cirkd_kd(s, t, tau)) == 1.000
    labelled = build_loss("kd", 8, 8, K, exclude_ignore=True)(seg(s, s), seg(t, t), mask)
    kl = (F.softmax(t, 1) * (F.log_softmax(t, 1) - F.log_softmax(s, 1))).sum(1)
    assert labelled.item() == pytest.approx(kl[mask != 255].mean().item(), rel=1e-5)  # the option


def test_ifvd_averages_over_all_pixels_as_cirkd() -> None:
    g = torch.Generator().manual_seed(2)
    fs, ft = torch.randn(N, 6, H, W, generator=g), torch.randn(N, 10, H, W, generator=g)
    mask = _mask()
    ours = build_loss("ifvd", 6, 10, K)(seg(fs, fs[:, :K]), seg(ft, ft[:, :K]), mask)
    assert _ratio(ours, _cirkd_ifv(fs, ft, mask, K)) == 1.000
    labelled = build_loss("ifvd", 6, 10, K, exclude_ignore=True)(seg(fs, fs[:, :K]), seg(ft, ft[:, :K]), mask)
    share = (mask != 255).float().mean().item()
    assert labelled.item() == pytest.approx(ours.item() / share, rel=1e-5)


def test_cwd_feature_divides_by_the_students_width_as_cirkd() -> None:
    g = torch.Generator().manual_seed(3)
    fs, ft = torch.randn(N, 4, H, W, generator=g), torch.randn(N, 8, H, W, generator=g)
    loss = build_loss("cwd_feature", 4, 8, K)
    ours = loss(seg(fs, fs[:, :K]), seg(ft, ft[:, :K]), _mask())
    assert _ratio(ours, _cirkd_cwd(fs, ft, loss.adapter, 4.0)) == 1.000
    by_teacher = build_loss("cwd_feature", 4, 8, K, normalize_by="teacher")
    by_teacher.load_state_dict(loss.state_dict())
    assert _ratio(by_teacher(seg(fs, fs[:, :K]), seg(ft, ft[:, :K]), _mask()), ours) == 0.5  # 4 / 8


def test_fitnets_regressor_is_a_plain_1x1_conv_as_cirkd() -> None:
    g = torch.Generator().manual_seed(4)
    fs, ft = torch.randn(N, 4, H, W, generator=g), torch.randn(N, 8, H, W, generator=g)
    loss = build_loss("fitnets", 4, 8, K)
    convs = [m for m in loss.modules() if isinstance(m, nn.Conv2d)]
    assert len(convs) == 1 and convs[0].kernel_size == (1, 1) and convs[0].bias is None
    assert not any(isinstance(m, nn.BatchNorm2d) for m in loss.modules())
    ours = loss(seg(fs, fs[:, :K]), seg(ft, ft[:, :K]), _mask())
    assert _ratio(ours, ((convs[0](fs) - ft) ** 2).mean()) == 1.000
    assert any(isinstance(m, nn.BatchNorm2d) for m in build_loss("fitnets", 4, 8, K, bn=True).modules())

"""CWD, pixel-wise KD and MSE equal their formulas; the loss registry builds and rejects properly."""

from __future__ import annotations

import math

import pytest
import torch

from ladseg.errors import ConfigError
from ladseg.losses import LOSSES, DistillLoss, align_to, build_loss, seg_ce
from ladseg.losses.consistency import CONSISTENCY
from ladseg.losses.cwd import cwd_loss
from ladseg.losses.kd import pixel_kl_loss
from ladseg.losses.mse import logit_mse_loss
from ladseg.models.segmentor import SegOutput

# p_t = softmax([0, ln 3]) = [1/4, 3/4], p_s = [1/2, 1/2]  ->  KL(p_t || p_s) by hand:
KL_BY_HAND = 0.25 * math.log(0.25 / 0.5) + 0.75 * math.log(0.75 / 0.5)


def test_cwd_by_hand_1x1x1x2() -> None:
    # one (n, c) channel with two locations: the softmax runs over the locations
    s = torch.zeros(1, 1, 1, 2)
    t = torch.tensor([0.0, math.log(3.0)]).view(1, 1, 1, 2)
    assert cwd_loss(s, t, tau=1.0).item() == pytest.approx(KL_BY_HAND, rel=1e-6)
    # tau = 2 with doubled logits: same distributions, times tau^2
    assert cwd_loss(2 * s, 2 * t, tau=2.0).item() == pytest.approx(4 * KL_BY_HAND, rel=1e-6)


def test_cwd_matches_formula_with_loops() -> None:
    s, t, tau = torch.randn(2, 3, 4, 5), torch.randn(2, 3, 4, 5), 4.0
    total = 0.0
    for n in range(2):
        for c in range(3):
            ps = torch.softmax(s[n, c].flatten() / tau, 0)
            pt = torch.softmax(t[n, c].flatten() / tau, 0)
            total += (pt * (pt.log() - ps.log())).sum().item()
    assert cwd_loss(s, t, tau).item() == pytest.approx(tau**2 / 6 * total, rel=1e-5)
    assert cwd_loss(t, t, tau).item() == pytest.approx(0.0, abs=1e-6)


def test_pixel_kl_by_hand_and_ignore() -> None:
    # softmax over the two classes of each pixel; pixel 0 differs, pixel 1 agrees
    s = torch.zeros(1, 2, 1, 2)
    t = torch.zeros(1, 2, 1, 2)
    t[0, 1, 0, 0] = math.log(3.0)
    assert pixel_kl_loss(s, t, tau=1.0).item() == pytest.approx(KL_BY_HAND / 2, rel=1e-6)
    # mask at twice the logits' size; pixel 1 ignored -> mean over pixel 0 only
    mask = torch.tensor([[[0, 0, 255, 255], [0, 0, 255, 255]]])
    assert pixel_kl_loss(s, t, tau=1.0, mask=mask).item() == pytest.approx(KL_BY_HAND, rel=1e-6)
    assert pixel_kl_loss(2 * s, 2 * t, tau=2.0).item() == pytest.approx(4 * KL_BY_HAND / 2, rel=1e-6)
    all_ignored = torch.full((1, 1, 2), 255)
    assert pixel_kl_loss(s, t, mask=all_ignored).item() == 0.0


def test_mse_and_consistency_table() -> None:
    s, t = torch.randn(2, 3, 4, 4), torch.randn(2, 3, 4, 4)
    assert logit_mse_loss(s, t).item() == pytest.approx(((s - t) ** 2).mean().item(), rel=1e-6)
    assert CONSISTENCY["cwd"](s, t, 4.0).item() == pytest.approx(cwd_loss(s, t, 4.0).item())
    assert CONSISTENCY["kl"](s, t, 2.0).item() == pytest.approx(pixel_kl_loss(s, t, 2.0).item())


def test_registered_losses_align_sizes_and_use_defaults() -> None:
    assert {"cwd", "kd", "mse"} <= set(LOSSES.names())
    student = SegOutput(torch.randn(2, 3, 8, 8, requires_grad=True), torch.randn(2, 16, 8, 8))
    teacher = SegOutput(torch.randn(2, 3, 16, 16), torch.randn(2, 32, 16, 16))
    mask = torch.randint(0, 3, (2, 64, 64))
    s, t = align_to(student.logits, teacher.logits)
    assert t.shape == s.shape == (2, 3, 8, 8)
    for name in ("cwd", "kd", "mse"):
        loss = build_loss(name, 16, 32, 3)
        assert isinstance(loss, DistillLoss)
        value = loss(student, teacher, mask)
        assert value.dim() == 0 and value.item() > 0
        value.backward()
    cwd = build_loss("cwd", 16, 32, 3)
    assert (cwd.default_weight, cwd.tau) == (3.0, 4.0)
    assert cwd(student, teacher, mask).item() == pytest.approx(
        cwd_loss(*align_to(student.logits, teacher.logits), 4.0).item()
    )
    kd = build_loss("kd", 16, 32, 3)
    assert (kd.default_weight, kd.tau) == (1.0, 1.0)


def test_feature_cwd_has_an_adapter_when_widths_differ() -> None:
    loss = build_loss("cwd_feature", 16, 32, 3, normalize_by="teacher")
    assert sum(p.numel() for p in loss.parameters()) == 16 * 32
    assert sum(p.numel() for p in build_loss("cwd_feature", 32, 32, 3).parameters()) == 0
    student = SegOutput(torch.randn(2, 3, 8, 8), torch.randn(2, 16, 8, 8))
    teacher = SegOutput(torch.randn(2, 3, 8, 8), torch.randn(2, 32, 8, 8))
    loss(student, teacher, torch.zeros(2, 8, 8, dtype=torch.long)).backward()
    assert loss.adapter[0].weight.grad is not None


def test_build_loss_errors() -> None:
    with pytest.raises(ConfigError, match="valid names"):
        build_loss("cwdd", 8, 8, 3)
    with pytest.raises(ConfigError, match="tau"):
        build_loss("cwd", 8, 8, 3, temperature=2.0)
    with pytest.raises(ConfigError, match=r"valid keys of loss mse: weight$"):
        build_loss("mse", 8, 8, 3, tau=2.0)


def test_seg_ce_is_the_mean_over_labelled_pixels_and_safe_when_none() -> None:
    logits = torch.randn(2, 3, 4, 4, requires_grad=True)
    mask = torch.randint(0, 3, (2, 8, 8))
    mask[0, :4] = 255
    out = SegOutput(logits, logits, aux_logits=2 * logits)
    ce, aux = seg_ce(out, mask, aux_weight=0.4)
    up = torch.nn.functional.interpolate(logits, size=(8, 8), mode="bilinear", align_corners=True)
    assert ce.item() == pytest.approx(
        torch.nn.functional.cross_entropy(up, mask, ignore_index=255).item(), rel=1e-5
    )
    assert aux.item() > 0 and seg_ce(out, mask)[1].item() == 0.0
    ce_none, _ = seg_ce(out, torch.full((2, 8, 8), 255))
    assert ce_none.item() == 0.0
    ce_none.backward()

"""SKD: pair-wise similarity graphs on pooled features; the optional holistic (WGAN-GP) term."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from kd_loss_helpers import seg

from ladseg.losses import build_loss
from ladseg.losses.skd import gradient_penalty


def test_two_pixel_similarity_hand_case() -> None:
    # student pixels (1,0),(0,1): graph [[1,0],[0,1]]; teacher (1,0),(1,0): [[1,1],[1,1]]; mean sq diff 2/4
    s = torch.tensor([[1.0, 0.0], [0.0, 1.0]]).reshape(1, 2, 1, 2)
    t = torch.tensor([[1.0, 1.0], [0.0, 0.0]]).reshape(1, 2, 1, 2)
    loss = build_loss("skd", 2, 2, 2, pairwise_weight=1.0, patch_size=1)
    assert loss(seg(s, s), seg(t, t), torch.zeros(1, 1, 2)).item() == pytest.approx(0.5)


def test_pooling_to_patches_matches_explicit_max_pool() -> None:
    s, t = torch.randn(2, 3, 8, 8), torch.randn(2, 5, 8, 8)
    loss = build_loss("skd", 3, 5, 2, pairwise_weight=2.0, pool_scale=0.5)  # 4x4 patches -> 2x2 nodes

    def graph(x: torch.Tensor) -> torch.Tensor:
        p = F.normalize(F.max_pool2d(x, 4).flatten(2), dim=1)
        return torch.einsum("ncp,ncq->npq", p, p)

    expected = 2.0 * ((graph(s) - graph(t)) ** 2).mean()
    got = loss(seg(s, s[:, :2]), seg(t, t[:, :2]), torch.zeros(2, 8, 8))
    assert got.item() == pytest.approx(expected.item(), rel=1e-5)


def test_holistic_term_trains_critic_and_student_separately() -> None:
    torch.manual_seed(0)
    s_logits = torch.randn(2, 3, 8, 8, requires_grad=True)
    t_logits = torch.randn(2, 3, 8, 8)
    feats = torch.randn(2, 4, 8, 8)
    loss = build_loss("skd", 4, 4, 3, pairwise_weight=0.0, adversarial=True, adv_weight=1.0, gp_weight=10.0)
    disc = loss.discriminator
    assert disc is not None and sum(p.numel() for p in loss.parameters()) > 0
    torch.manual_seed(5)
    loss(seg(feats, s_logits), seg(feats, t_logits), torch.zeros(2, 8, 8)).backward()
    d_grads = [p.grad.clone() for p in disc.parameters()]
    assert s_logits.grad is not None and s_logits.grad.abs().sum() > 0  # generator term reaches the student

    # the critic's gradients are those of the critic loss alone: the generator term leaves D untouched
    disc.zero_grad()
    ps, pt = s_logits.detach().softmax(1), t_logits.softmax(1)
    torch.manual_seed(5)
    critic = disc(ps).mean() - disc(pt).mean() + 10.0 * gradient_penalty(disc, pt, ps)
    critic.backward()
    for g, p in zip(d_grads, disc.parameters(), strict=True):
        torch.testing.assert_close(g, p.grad)


def test_gradient_penalty_of_a_unit_slope_critic_is_zero() -> None:
    class Linear(torch.nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return x.flatten(1)[:, 0]  # gradient norm exactly 1

    real, fake = torch.randn(3, 2, 4, 4), torch.randn(3, 2, 4, 4)
    assert gradient_penalty(Linear(), real, fake).item() == pytest.approx(0.0)

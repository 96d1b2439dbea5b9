"""CIRKD: mini-batch pixel-pair relations and the memory-based pixel / region contrast."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from kd_loss_helpers import SMALL_MEMORY, seg

from ladseg.losses import build_loss


def test_minibatch_equals_the_pairwise_double_loop() -> None:
    s, t = torch.randn(3, 4, 3, 3), torch.randn(3, 6, 3, 3)
    tau = 0.5
    fs, ft = F.normalize(s, dim=1).flatten(2), F.normalize(t, dim=1).flatten(2)  # N x C x P
    expected = 0.0
    for i in range(3):
        for j in range(3):
            log_ps = F.log_softmax(fs[i].t() @ fs[j] / tau, dim=1)
            pt = F.softmax(ft[i].t() @ ft[j] / tau, dim=1)
            expected += F.kl_div(log_ps, pt, reduction="batchmean")
    expected /= 9
    loss = build_loss("cirkd_minibatch", 4, 6, 2, tau=tau)
    got = loss(seg(s, s[:, :2]), seg(t, t[:, :2]), torch.zeros(3, 3, 3))
    assert got.item() == pytest.approx(expected.item(), rel=1e-5)


def test_minibatch_two_pixel_hand_case() -> None:
    # one image, two orthogonal student pixels vs two identical teacher pixels, tau 1:
    # teacher rows uniform (1/2, 1/2); student rows softmax(1, 0) -> KL = log(1/2) - mean log softmax
    s = torch.tensor([[1.0, 0.0], [0.0, 1.0]]).reshape(1, 2, 1, 2)
    t = torch.tensor([[1.0, 1.0], [0.0, 0.0]]).reshape(1, 2, 1, 2)
    e = torch.tensor(1.0).exp()
    log_p = torch.stack([torch.log(e / (e + 1)), torch.log(1 / (e + 1))])
    expected = (0.5 * (torch.log(torch.tensor(0.5)) - log_p)).sum()
    loss = build_loss("cirkd_minibatch", 2, 2, 2, tau=1.0)
    assert loss(seg(s, s), seg(t, t), torch.zeros(1, 1, 2)).item() == pytest.approx(expected.item(), rel=1e-5)


def test_memory_queues_fill_with_teacher_embeddings() -> None:
    loss = build_loss("cirkd_memory", 4, 4, 3, **SMALL_MEMORY)
    t = torch.randn(2, 4, 4, 4)
    mask = torch.zeros(2, 4, 4, dtype=torch.long)
    mask[:, 2:] = 1
    mask[1, 0] = 255
    loss(seg(torch.randn(2, 4, 4, 4), torch.randn(2, 3, 4, 4)), seg(t, t[:, :3]), mask)
    mem = loss.memory
    assert mem.region_ptr == [2, 2, 0]  # one region per image and present class, class 2 absent
    assert mem.pixel_ptr[0] == 8 + 4 and mem.pixel_ptr[1] == 16  # up to 16 pixels per image and class
    tn = F.normalize(t, dim=1)
    region0 = F.normalize(tn[0][:, mask[0] == 0].mean(dim=1), dim=0)
    torch.testing.assert_close(mem.regions[0, 0], region0)
    written = mem.pixels[1, :16]  # class-1 pixels of both images, unit norm, each one a teacher pixel
    pool = torch.cat([tn[i][:, mask[i] == 1].t() for i in range(2)])
    assert torch.cdist(written, pool).min(dim=1).values.max() < 1e-5


def test_memory_loss_equals_contrast_kl_formula() -> None:
    torch.manual_seed(3)
    params = dict(SMALL_MEMORY, pixel_contrast_size=10**4, region_contrast_size=10**4)  # use whole queues
    loss = build_loss("cirkd_memory", 4, 6, 3, pixel_weight=0.3, region_weight=0.7, **params)
    s, t = torch.randn(2, 4, 4, 4), torch.randn(2, 6, 4, 4)
    mask = torch.randint(0, 3, (2, 8, 8))
    mask[0, :4] = 255
    got = loss(seg(s, s[:, :3]), seg(t, t[:, :3]), mask)
    labels = F.interpolate(mask[:, None].float(), size=(4, 4), mode="nearest")[:, 0].long().flatten()
    valid = labels != 255
    sa = F.normalize(loss.projector(s), dim=1).permute(0, 2, 3, 1).reshape(-1, 6)[valid]
    ta = F.normalize(t, dim=1).permute(0, 2, 3, 1).reshape(-1, 6)[valid]
    expected = 0.0
    for w, bank in ((0.3, loss.memory.pixels), (0.7, loss.memory.regions)):
        x = bank.reshape(-1, 6)
        log_ps = F.log_softmax(sa @ x.t() / 0.1, dim=1)
        pt = F.softmax(ta @ x.t() / 0.1, dim=1)
        expected += w * F.kl_div(log_ps, pt, reduction="batchmean")
    assert got.item() == pytest.approx(expected.item(), rel=1e-4)


def test_cirkd_is_minibatch_plus_memory() -> None:
    s, t = torch.randn(2, 4, 4, 4), torch.randn(2, 6, 4, 4)
    mask = torch.randint(0, 3, (2, 8, 8))
    both = build_loss("cirkd", 4, 6, 3, minibatch_weight=2.0, **SMALL_MEMORY)
    mb = build_loss("cirkd_minibatch", 4, 6, 3)
    mem = build_loss("cirkd_memory", 4, 6, 3, **SMALL_MEMORY)
    mem.load_state_dict(both.memory.state_dict())
    args = (seg(s, s[:, :3]), seg(t, t[:, :3]), mask)
    torch.manual_seed(7)
    total = both(*args)
    torch.manual_seed(7)
    parts = 2.0 * mb(*args) + mem(*args)
    assert total.item() == pytest.approx(parts.item(), rel=1e-5)

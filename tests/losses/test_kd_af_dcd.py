"""Af-DCD (Fan et al., NeurIPS 2023) against the authors' ``OmniContrastiveFeatureLoss`` on the same tensors.

``_official`` re-states, in plain torch and in the authors' own steps (``losses/ocmgd.py`` of OSVAI/Af-DCD:
mask by ``torch.where``, ``view``/``permute``/``split``/``stack`` into channel groups, boolean-mask selection of
positives and negatives, ``CrossEntropyLoss(reduction="sum")``), what their loss computes; ladseg's loss shares
only the adapter and projector weights with it.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from kd_loss_helpers import tiny_segmentor
from torch import Tensor, nn

from ladseg.engine.config import load_config
from ladseg.engine.inputs import input_normalization
from ladseg.errors import ConfigError
from ladseg.losses import build_loss
from ladseg.methods import build_method
from ladseg.models import build_model
from ladseg.models.segmentor import BACKBONE_KEY, SegOutput


def _out(c4: Tensor) -> SegOutput:
    logits = torch.zeros(c4.shape[0], 3, *c4.shape[-2:])
    return SegOutput(logits=logits, features=logits, extras={BACKBONE_KEY: c4})


def _to_ctr_format(x: Tensor, m: int, patch: tuple[int, int]) -> Tensor:
    bs, c, h, w = x.shape
    hp, wp = patch
    x = x.contiguous().view(bs, c, h // hp, hp, w // wp, wp).permute(0, 2, 4, 1, 3, 5)
    x = torch.stack(x.split(c // m, dim=3), dim=3)
    x = x.contiguous().view(bs, (h * w) // (hp * wp), m, c // m, hp * wp)
    return x.permute(0, 1, 4, 2, 3).contiguous().view(-1, hp * wp * m, c // m)


def _official_ctr(
    preds: Tensor, targets: Tensor, tau: float, m: int, pool: int, patch: int, crop: int
) -> Tensor:
    if crop:  # the CamVid branch
        preds, targets = preds[:, :, :crop, :crop], targets[:, :, :crop, :crop]
    elif pool:
        preds, targets = F.max_pool2d(preds, pool), F.max_pool2d(targets, pool)
    bs, _, h, w = preds.shape
    n2 = patch * patch
    p, t = _to_ctr_format(preds, m, (patch, patch)), _to_ctr_format(targets, m, (patch, patch))
    sim = -torch.cdist(p, t, p=1)
    eye = torch.eye(n2 * m, dtype=torch.bool).repeat(sim.shape[0], 1, 1)
    group = torch.cat([torch.arange(m) for _ in range(n2)])
    negative = ~(group[None] == group[:, None]).repeat(sim.shape[0], 1, 1)
    logits = (
        torch.cat([sim[eye].view(bs * h * w * m, -1), sim[negative].view(bs * h * w * m, -1)], dim=1) / tau
    )
    labels = torch.zeros(logits.shape[0], dtype=torch.long)
    return nn.CrossEntropyLoss(reduction="sum")(logits, labels) / (h * w)


def _official(
    fs: Tensor, ft: Tensor, align: nn.Module, proj: nn.Module, rand: bool, **kw: float
) -> tuple[Tensor, Tensor]:
    fs = align(fs)
    bs, _, h, w = ft.shape
    if rand:
        mat = torch.where(torch.rand((bs, 1, h, w)) > 1 - 0.75, 0, 1)
    else:
        mat = torch.ones((bs, 1, h, w))
        mat[:, :, h // 3 : 2 * h // 3, w // 3 : 2 * w // 3] = 0
    new = proj(torch.mul(fs, mat))
    dis = nn.MSELoss(reduction="sum")(new, ft) / bs
    return dis, _official_ctr(new, ft, **kw) / bs  # type: ignore[arg-type]


def _ratio(a: Tensor, b: Tensor) -> float:
    return round(a.item() / b.item(), 3)


@pytest.mark.parametrize(
    ("mask", "projector", "pool", "patch", "crop", "size"),
    [
        ("random", "plain", 4, 2, 0, 16),  # the defaults' shape: pooled, 2 x 2 patches
        ("random", "enhanced", 2, 4, 0, 16),  # the Cityscapes R18 script's projector
        ("center", "plain", 4, 2, 0, 16),
        ("random", "plain", 0, 4, 8, 9),  # the CamVid branch: no pooling, a top-left crop
    ],
)
def test_equals_the_authors_loss(
    mask: str, projector: str, pool: int, patch: int, crop: int, size: int
) -> None:
    g = torch.Generator().manual_seed(0)
    fs, ft = torch.randn(2, 6, size, size, generator=g), torch.randn(2, 8, size, size, generator=g)
    opts = dict(
        tau=0.5, partitions=4, pool_size=pool, patch_size=patch, crop=crop, mask=mask, projector=projector
    )
    fd_only = build_loss("af_dcd", 6, 8, 3, fd_weight=1.0, ctr_weight=0.0, **opts)
    both = build_loss("af_dcd", 6, 8, 3, fd_weight=2e-6, ctr_weight=0.005, **opts)
    both.load_state_dict(fd_only.state_dict())
    torch.manual_seed(5)
    dis, ctr = _official(
        fs,
        ft,
        fd_only.align,
        fd_only.projector,
        mask == "random",
        tau=0.5,
        m=4,
        pool=pool,
        patch=patch,
        crop=crop,
    )
    torch.manual_seed(5)
    ours_fd = fd_only(_out(fs), _out(ft), torch.zeros(2, size, size))
    torch.manual_seed(5)
    ours = both(_out(fs), _out(ft), torch.zeros(2, size, size))
    assert _ratio(ours_fd, dis) == 1.000
    assert _ratio(ours, 2e-6 * dis + 0.005 * ctr) == 1.000
    assert ctr.item() > 0 and _ratio((ours - 2e-6 * ours_fd) / 0.005, ctr) == 1.000


def test_gradients_reach_student_adapter_and_projector_never_teacher() -> None:
    torch.manual_seed(1)
    fs = torch.randn(2, 6, 8, 8, requires_grad=True)
    ft = torch.randn(2, 8, 16, 16, requires_grad=True)  # another grid: resized to the student's
    loss = build_loss(
        "af_dcd", 6, 8, 3, fd_weight=1.0, ctr_weight=1.0, partitions=4, pool_size=2, patch_size=2
    )
    value = loss(_out(fs), _out(ft), torch.zeros(2, 32, 32))
    assert torch.isfinite(value) and value.item() > 0
    value.backward()
    assert ft.grad is None and fs.grad is not None and fs.grad.abs().sum() > 0
    for name, p in loss.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, name


def test_equal_widths_need_no_adapter_and_masking_drops_the_student() -> None:
    loss = build_loss("af_dcd", 8, 8, 3, partitions=4, mask_ratio=0.0)
    assert isinstance(loss.align, nn.Identity)
    f = torch.randn(1, 8, 8, 8)
    # the masked positions reach the projector as zeros: the loss does not depend on their features
    loss_center = build_loss("af_dcd", 8, 8, 3, partitions=4, mask="center", fd_weight=1.0)
    g = f.clone()
    g[:, :, 2:5, 2:5] += 100.0
    same = [loss_center(_out(x), _out(f), torch.zeros(1, 8, 8)).item() for x in (f, g)]
    assert same[0] == pytest.approx(same[1], rel=1e-6)


def test_a_map_smaller_than_a_patch_is_one_patch() -> None:
    loss = build_loss("af_dcd", 4, 4, 3, partitions=2, pool_size=0, patch_size=4)
    value = loss(_out(torch.randn(2, 4, 2, 3)), _out(torch.randn(2, 4, 2, 3)), torch.zeros(2, 8, 8))
    assert torch.isfinite(value)


@pytest.mark.parametrize(
    "params",
    [
        {"partitions": 3},
        {"mask": "box"},
        {"projector": "mlp"},
        {"mask_ratio": 1.0},
        {"tau": 0.0},
        {"patch_size": 0},
    ],
)
def test_bad_values_and_widths_are_config_errors(params: dict) -> None:
    with pytest.raises(ConfigError):
        build_loss("af_dcd", 6, 8, 3, **{"partitions": 4, **params})


def test_teacher_widths_that_cannot_be_partitioned_name_the_pair() -> None:
    with pytest.raises(ConfigError, match=r"kd_losses\[0\] \(af_dcd\).*backbone width 12 .*partitions=16"):
        build_method(
            "distill",
            {"kd_losses": [{"name": "af_dcd"}]},
            tiny_segmentor(8, 5),
            5,
            teacher=tiny_segmentor(12, 5, stride2=1),
            data_normalization=input_normalization("imagenet"),
        )


def _method(seed: int) -> nn.Module:
    torch.manual_seed(seed)
    m = build_method(
        "distill",
        {"kd_losses": [{"name": "af_dcd", "partitions": 4, "pool_size": 2, "patch_size": 2}]},
        tiny_segmentor(8, 5),
        5,
        teacher=tiny_segmentor(12, 5, stride2=1),
        data_normalization=input_normalization("imagenet"),
    )
    return m.train()


def test_method_reads_the_backbone_and_resumes_exactly() -> None:
    m = _method(0)
    assert (m.loss_modules[0].align.in_channels, m.loss_modules[0].align.out_channels) == (8, 12)
    batch = {"image": torch.randn(2, 3, 32, 32), "mask": torch.randint(0, 5, (2, 32, 32))}
    opt = torch.optim.SGD([p for p in m.parameters() if p.requires_grad], lr=0.1)
    torch.manual_seed(3)
    out = m(batch)
    out["loss"].backward()
    assert m.loss_modules[0].projector[0].weight.grad.abs().sum() > 0
    opt.step()
    resumed = _method(1)  # other initial weights: everything must come from the state
    resumed.load_state_dict(m.state_dict())
    resumed.set_teacher(m.teacher)
    torch.manual_seed(4)
    a = m(batch)["kd_af_dcd"]
    torch.manual_seed(4)
    b = resumed(batch)["kd_af_dcd"]
    assert a.item() == b.item()
    exported = m.export_model().state_dict()  # the adapter and projector stay with the method state
    assert exported.keys() == m.network.state_dict().keys() and not any("projector" in k for k in exported)


def test_camvid_benchmark_pair_takes_a_step_at_the_quick_profile_size() -> None:
    """EfficientNet-Lite2 (352 channels at 1/16) -> STDC1 (1024 at 1/32): a 64 px crop gives a 2 x 2 map."""
    cfg = load_config(Path(__file__).parents[2] / "configs/camvid/kd_af_dcd_effl2_stdc1_camvid_half.yaml")
    torch.manual_seed(0)
    teacher = build_model("deeplabv3", "efficientnet_lite2", num_classes=11, output_stride=16).eval()
    student = build_model("stdc", "stdc1", num_classes=11, output_stride=8)
    m = build_method(
        "distill",
        cfg.method,
        student,
        11,
        teacher=teacher,
        data_normalization=input_normalization("imagenet"),
    )
    out = m.train()({"image": torch.randn(2, 3, 64, 64), "mask": torch.randint(0, 11, (2, 64, 64))})
    assert torch.isfinite(out["kd_af_dcd"]) and out["kd_af_dcd"].item() > 0
    out["loss"].backward()
    assert m.loss_modules[1].align.weight.shape[:2] == (352, 1024)

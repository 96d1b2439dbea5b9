"""Light backbones (MobileNetV2, EfficientNet-Lite0/1/2, STDC1/2) and the OCR and STDC heads."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
import torchvision

from ladseg.errors import CheckpointError, LadsegError
from ladseg.models.backbones import BACKBONES
from ladseg.models.backbones.efficientnet_lite import (
    VARIANTS,
    efficientnet_lite_classifier,
    package_weights_path,
)
from ladseg.models.backbones.stdc import STDCNet
from ladseg.models.heads import HEADS
from ladseg.models.heads.ocr import spatial_gather
from ladseg.models.heads.stdc_head import detail_loss, detail_targets
from ladseg.models.segmentor import Segmentor

LIGHT = ["mobilenetv2", "efficientnet_lite0", "efficientnet_lite2", "stdc1", "stdc2"]
SIZE = 64


@pytest.mark.parametrize("in_channels", [3, 4])
@pytest.mark.parametrize("name", LIGHT)
def test_backbone_forward_backward(name: str, in_channels: int) -> None:
    net = BACKBONES.build(name, in_channels=in_channels)
    assert net.in_channels == in_channels
    assert net.first_conv.in_channels == in_channels
    feats = net(torch.randn(2, in_channels, SIZE, SIZE))
    assert len(feats) == 4 == len(net.out_channels) == len(net.strides)
    for f, c, s in zip(feats, net.out_channels, net.strides, strict=True):
        assert tuple(f.shape) == (2, c, SIZE // s, SIZE // s)
    sum(f.mean() for f in feats).backward()
    grad = net.first_conv.weight.grad
    assert grad is not None and grad[:, in_channels - 1].abs().sum() > 0


@pytest.mark.parametrize("name", ["mobilenetv2", "efficientnet_lite0"])
@pytest.mark.parametrize(
    ("output_stride", "strides"), [(8, (4, 8, 8, 8)), (16, (4, 8, 16, 16)), (32, (4, 8, 16, 32))]
)
@torch.no_grad()
def test_dilated_output_stride(name: str, output_stride: int, strides: tuple[int, ...]) -> None:
    net = BACKBONES.build(name, output_stride=output_stride).eval()
    assert net.strides == strides
    feats = net(torch.randn(1, 3, SIZE, SIZE))
    assert [SIZE // f.shape[-1] for f in feats] == list(strides)


@pytest.mark.parametrize("name", ["stdc1", "mobilenetv2", "efficientnet_lite0"])
def test_unsupported_output_stride_is_refused(name: str) -> None:
    with pytest.raises(LadsegError, match="output_stride"):
        BACKBONES.build(name, output_stride=16 if name.startswith("stdc") else 4)


def _check_widened(first: torch.Tensor, rgb: torch.Tensor) -> None:
    assert first.shape[1] == 4
    torch.testing.assert_close(first[:, :3], rgb, rtol=0, atol=0)
    extra = first[:, 3]
    assert 0.05 < float(extra.std()) < 0.15  # the new (label) channel ~ N(0, 0.1^2)


def test_mobilenetv2_loads_torchvision_weights_widened(tmp_path) -> None:
    ref = torchvision.models.mobilenet_v2(weights=None)
    for m in ref.modules():  # make running stats distinguishable from the defaults
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.normal_()
    sd = ref.state_dict()
    path = tmp_path / "mobilenet_v2.pth"
    torch.save(sd, path)
    net = BACKBONES.build("mobilenetv2", in_channels=4, pretrained=str(path))
    _check_widened(net.first_conv.weight.detach(), sd["features.0.0.weight"])
    own = net.state_dict()
    for key in (
        "features.17.conv.2.weight",
        "features.7.conv.1.0.weight",
        "features.3.conv.1.1.running_mean",
    ):
        torch.testing.assert_close(own[key], sd[key], rtol=0, atol=0)
    same = BACKBONES.build("mobilenetv2", in_channels=3, pretrained=str(path))
    torch.testing.assert_close(same.first_conv.weight.detach(), sd["features.0.0.weight"])


@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_efficientnet_lite_loads_package_weights_widened(variant: str) -> None:
    sd = torch.load(package_weights_path(variant), map_location="cpu", weights_only=True)
    net = BACKBONES.build(variant, in_channels=4, pretrained="package")
    _check_widened(net.first_conv.weight.detach(), sd["_conv_stem.weight"])
    own = net.state_dict()
    last = len(net.blocks) - 1
    assert f"_blocks.{last}._project_conv.weight" in sd and f"_blocks.{last + 1}._bn0.weight" not in sd
    torch.testing.assert_close(own["blocks.9.depthwise_conv.weight"], sd["_blocks.9._depthwise_conv.weight"])
    torch.testing.assert_close(own[f"blocks.{last}.bn2.running_var"], sd[f"_blocks.{last}._bn2.running_var"])
    assert net.out_channels[-1] == sd["_conv_head.weight"].shape[1]


def test_stdc_loads_authors_layout_and_rejects_foreign_weights(tmp_path) -> None:
    src = STDCNet((2, 2, 2))
    sd = dict(src.state_dict())
    sd["conv_last.conv.weight"] = torch.zeros(1024, 1024, 1, 1)  # the ImageNet head is skipped
    sd["linear.weight"] = torch.zeros(1000, 1024)
    path = tmp_path / "stdc1.pth"
    torch.save({"state_dict": sd}, path)
    net = BACKBONES.build("stdc1", in_channels=4, pretrained=str(path))
    _check_widened(net.first_conv.weight.detach(), sd["features.0.conv.weight"])
    torch.testing.assert_close(
        net.state_dict()["features.6.conv_list.3.conv.weight"], sd["features.6.conv_list.3.conv.weight"]
    )
    with pytest.raises(CheckpointError, match="missing keys"):
        BACKBONES.build("stdc2", pretrained=str(path))  # STDC2 has more modules than the file


@pytest.fixture(scope="module", params=sorted(VARIANTS))
def lite_classifier(request) -> torch.nn.Module:
    return efficientnet_lite_classifier("package", variant=request.param).eval()


# mean/std in 0-255 units: ImageNet's and the TF Lite recipe's (x - 127.5) / 128 both work
NORMS = {
    "imagenet": ((0.485 * 255, 0.456 * 255, 0.406 * 255), (0.229 * 255, 0.224 * 255, 0.225 * 255)),
    "lite_127.5_128": ((127.5,) * 3, (128.0,) * 3),
}


@pytest.mark.parametrize("norm", sorted(NORMS))
@pytest.mark.parametrize(
    ("photo", "classes"), [("chelsea", {281, 282, 283, 284, 285}), ("coffee", {967, 968, 504})]
)
@torch.no_grad()
def test_lite_package_weights_classify_photos(
    lite_classifier, norm: str, photo: str, classes: set[int]
) -> None:
    skdata = pytest.importorskip("skimage.data")
    img = torch.from_numpy(np.ascontiguousarray(getattr(skdata, photo)())).permute(2, 0, 1).float()[None]
    img = F.interpolate(img, size=(256, 256), mode="bilinear", align_corners=False, antialias=True)
    mean, std = (torch.tensor(v).view(1, 3, 1, 1) for v in NORMS[norm])
    top5 = lite_classifier((img - mean) / std).topk(5, dim=1).indices[0].tolist()
    assert classes & set(top5), f"{photo}: top-5 ImageNet classes {top5} miss {sorted(classes)}"


@pytest.mark.parametrize(
    ("backbone", "head", "kw"),
    [
        ("mobilenetv2", "ocr", {}),
        ("stdc1", "ocr", {}),
        ("stdc1", "stdc_head", {"detail": True}),
        ("efficientnet_lite0", "stdc_head", {}),
    ],
)
def test_heads_in_segmentor(backbone: str, head: str, kw: dict) -> None:
    bb = BACKBONES.build(backbone, in_channels=4)
    model = Segmentor(bb, HEADS.build(head, bb.out_channels, 5, **kw)).train()
    out = model(torch.randn(2, 4, SIZE, SIZE))
    stride = bb.strides[-1] if head == "ocr" else bb.strides[-3]
    assert out.logits.shape == (2, 5, SIZE // stride, SIZE // stride)
    assert out.features.shape[0] == 2 and out.features.shape[-2:] == out.logits.shape[-2:]
    assert out.aux_logits is not None and out.aux_logits.shape[:2] == (2, 5)
    if head == "stdc_head":
        assert out.extras["aux16"].shape[:2] == (2, 5)
        assert ("detail" in out.extras) == bool(kw.get("detail"))
        if kw.get("detail"):
            assert out.extras["detail"].shape == (2, 1, SIZE // 8, SIZE // 8)
    loss = out.logits.mean() + out.aux_logits.mean() + sum(v.mean() for v in out.extras.values())
    loss.backward()
    assert bb.first_conv.weight.grad is not None
    model.eval()
    with torch.no_grad():
        ev = model(torch.randn(1, 4, SIZE, SIZE))
    assert ev.aux_logits is None and not ev.extras  # auxiliary branches are training-only


def test_ocr_channels_default_follows_backbone_width() -> None:
    assert HEADS.build("ocr", (256, 512, 1024, 2048), 3).channels == 512
    assert HEADS.build("ocr", (24, 32, 96, 320), 3).channels == 256


def test_spatial_gather_is_region_weighted_mean() -> None:
    feats = torch.randn(1, 6, 4, 4)
    regions = torch.full((1, 2, 4, 4), -1e4)
    regions[0, 0, :, :2] = 0  # region 0 = left half, region 1 = right half
    regions[0, 1, :, 2:] = 0
    ctx = spatial_gather(feats, regions)
    assert ctx.shape == (1, 6, 2, 1)
    torch.testing.assert_close(ctx[0, :, 0, 0], feats[0, :, :, :2].mean(dim=(1, 2)))
    torch.testing.assert_close(ctx[0, :, 1, 0], feats[0, :, :, 2:].mean(dim=(1, 2)))


def _square_mask() -> torch.Tensor:
    mask = torch.zeros(1, 16, 16, dtype=torch.long)
    mask[0, 4:12, 4:12] = 1
    return mask


def test_detail_targets_mark_the_square_boundary() -> None:
    target = detail_targets(_square_mask(), num_classes=2)
    assert target.shape == (1, 1, 16, 16)
    assert set(target.unique().tolist()) == {0.0, 1.0}
    t = target[0, 0]
    for y, x in [(4, 4), (4, 8), (11, 8), (8, 4), (8, 11), (3, 8), (12, 8)]:  # edge pixels, both sides
        assert t[y, x] == 1, (y, x)
    for y, x in [(8, 8), (0, 0), (15, 15), (0, 8)]:  # interior and far background
        assert t[y, x] == 0, (y, x)
    torch.testing.assert_close(t, t.T)  # the square is symmetric, so is its boundary
    # swapping the class ids does not move the boundary (one-hot Laplacian, not raw ids)
    torch.testing.assert_close(detail_targets(1 - _square_mask(), num_classes=2), target)


def test_detail_targets_constant_mask_ignore_and_errors() -> None:
    assert detail_targets(torch.ones(2, 8, 8, dtype=torch.long), num_classes=3).sum() == 0  # no border edges
    mask = torch.zeros(1, 16, 16, dtype=torch.long)
    mask[0, :, 8:] = 255
    assert detail_targets(mask, num_classes=2)[0, 0, 5, 7] == 1  # ignore is its own region
    with pytest.raises(LadsegError, match="labels must be"):
        detail_targets(torch.full((1, 4, 4), 7), num_classes=3)


def test_detail_loss_prefers_the_right_boundaries() -> None:
    target = detail_targets(_square_mask(), num_classes=2)
    good = (target * 2 - 1) * 6  # confident and right
    bad = -good
    assert float(detail_loss(good, target)) < 0.1 < float(detail_loss(bad, target))
    logits = torch.zeros(1, 1, 8, 8, requires_grad=True)  # lower resolution: up-sampled inside
    detail_loss(logits, target[:, 0]).backward()
    assert logits.grad is not None and logits.grad.abs().sum() > 0

"""Reference (CIRKD/LAD) checkpoint import: every listed key arrives, and logits match an
independent functional re-implementation of the reference forward (reference-architecture.md)."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from ref_checkpoints import REF_DIR, parse_key_file, random_state_dict

from ladseg.cli import main as cli_main
from ladseg.errors import CheckpointError
from ladseg.models.convert import (
    convert_reference_checkpoint,
    detect_reference_spec,
    load_reference_checkpoint,
    rename_reference_key,
)

SEG_FILES = sorted(p.name for p in REF_DIR.glob("*_voc21_lad.txt")) if REF_DIR.exists() else []
needs_ref = pytest.mark.skipif(not SEG_FILES, reason="reference key lists not available")


def _ref_sd(name: str, seed: int = 0) -> dict[str, torch.Tensor]:
    return random_state_dict(parse_key_file(REF_DIR / name), seed=seed)


@needs_ref
@pytest.mark.parametrize("filename", SEG_FILES)
def test_every_reference_tensor_arrives(filename: str) -> None:
    sd = _ref_sd(filename)
    model, meta = convert_reference_checkpoint(sd)
    spec = meta["spec"]
    assert spec == model.spec and meta["normalize"] == "reference_bgr"
    assert spec["name"] == ("deeplabv3" if filename.startswith("deeplabv3") else "pspnet")
    assert spec["backbone"] == filename.split("_")[1]
    assert (spec["num_classes"], spec["in_channels"], spec["aux"]) == (21, 4, True)
    own = model.state_dict()
    assert len(own) == len(sd)
    for key, value in sd.items():
        assert torch.equal(own[rename_reference_key(key)], value), key


@needs_ref
def test_cirkd_three_channel_and_wrapped_module_prefix() -> None:
    sd = _ref_sd("psp_resnet18_voc21_lad.txt")
    sd["pretrained.conv1.weight"] = sd["pretrained.conv1.weight"][:, :3].clone()
    model, meta = convert_reference_checkpoint({"state_dict": {f"module.{k}": v for k, v in sd.items()}})
    assert model.in_channels == 3 and meta["spec"]["in_channels"] == 3


@needs_ref
def test_bad_reference_files_name_the_problem() -> None:
    sd = _ref_sd("deeplabv3_resnet18_voc21_lad.txt")
    sd.pop("head.aspp.b2.block.1.running_var")
    sd["head.aspp.extra.weight"] = torch.zeros(3)
    with pytest.raises(
        CheckpointError, match=r"missing keys: decode_head\.aspp\.branches\.2\.1\.running_var"
    ) as e:
        convert_reference_checkpoint(sd)
    assert "head.aspp.extra.weight [3]" in str(e.value)
    with pytest.raises(CheckpointError, match="not a reference"):
        convert_reference_checkpoint({"conv1.weight": torch.zeros(1), "fc.weight": torch.zeros(1)})
    sd = _ref_sd("psp_resnet18_voc21_lad.txt")
    with pytest.raises(CheckpointError, match=r"head\.ocr"):
        convert_reference_checkpoint(
            {
                **{k: v for k, v in sd.items() if not k.startswith("head.psp")},
                "head.ocr.weight": torch.zeros(1),
            }
        )
    sd["pretrained.layer3.2.conv1.weight"] = torch.zeros(1)  # a third block: not a ResNet-18
    with pytest.raises(CheckpointError, match="unsupported reference backbone"):
        detect_reference_spec(sd)


# --- an independent reference forward, written from reference-architecture.md -----------------


def _conv(sd, x, p, stride=1, dil=1):
    w = sd[p + ".weight"]
    pad = dil * (w.shape[-1] // 2)
    return F.conv2d(x, w, sd.get(p + ".bias"), stride=stride, padding=pad, dilation=dil)


def _bn(sd, x, p):
    return F.batch_norm(
        x,
        sd[p + ".running_mean"],
        sd[p + ".running_var"],
        sd[p + ".weight"],
        sd[p + ".bias"],
        training=False,
        eps=1e-5,
    )


def _cbr(sd, x, conv, bn, stride=1, dil=1):
    return F.relu(_bn(sd, _conv(sd, x, conv, stride, dil), bn))


def _resnet18_v1s_os8(sd, x):
    p = "pretrained."
    x = _cbr(sd, x, p + "conv1", p + "bn1", stride=2)
    x = _cbr(sd, x, p + "conv2", p + "bn2")
    x = _cbr(sd, x, p + "conv3", p + "bn3")
    x = F.max_pool2d(x, 3, 2, 1)
    # (stage, stride, [(d1, d2) per block]) as the reference's dilation rule states
    plan = [
        (1, 1, [(1, 1), (1, 1)]),
        (2, 2, [(1, 1), (1, 1)]),
        (3, 1, [(1, 2), (2, 2)]),
        (4, 1, [(2, 4), (4, 4)]),
    ]
    feats = []
    for stage, stride, blocks in plan:
        for i, (d1, d2) in enumerate(blocks):
            b = f"{p}layer{stage}.{i}."
            s = stride if i == 0 else 1
            idt = x
            if b + "downsample.0.weight" in sd:
                idt = _bn(sd, F.conv2d(x, sd[b + "downsample.0.weight"], stride=s), b + "downsample.1")
            out = _cbr(sd, x, b + "conv1", b + "bn1", stride=s, dil=d1)
            out = _bn(sd, _conv(sd, out, b + "conv2", dil=d2), b + "bn2")
            x = F.relu(out + idt)
        feats.append(x)
    return feats


def _up(x, size):
    return F.interpolate(x, size=size, mode="bilinear", align_corners=True)


def _deeplabv3_head(sd, c4):
    a = "head.aspp."
    outs = [_cbr(sd, c4, a + "b0.0", a + "b0.1")]
    for i, rate in zip((1, 2, 3), (12, 24, 36), strict=True):
        outs.append(_cbr(sd, c4, f"{a}b{i}.block.0", f"{a}b{i}.block.1", dil=rate))
    pooled = _cbr(sd, c4.mean(dim=(2, 3), keepdim=True), a + "b4.gap.1", a + "b4.gap.2")
    outs.append(_up(pooled, c4.shape[-2:]))
    x = _cbr(sd, torch.cat(outs, 1), a + "project.0", a + "project.1")
    x = _cbr(sd, x, "head.block.0", "head.block.1")
    return _conv(sd, x, "head.block.4")


def _psp_head(sd, c4):
    pools = [
        _up(
            _cbr(sd, F.adaptive_avg_pool2d(c4, b), f"head.psp.conv{i}.0", f"head.psp.conv{i}.1"),
            c4.shape[-2:],
        )
        for i, b in zip((1, 2, 3, 4), (1, 2, 3, 6), strict=True)
    ]
    x = _cbr(sd, torch.cat([c4, *pools], 1), "head.block.0", "head.block.1")
    return _conv(sd, x, "head.classifier")


def _aux_head(sd, c3):
    return _conv(sd, _cbr(sd, c3, "auxlayer.block.0", "auxlayer.block.1"), "auxlayer.block.4")


@needs_ref
@pytest.mark.parametrize(
    ("filename", "head"),
    [("deeplabv3_resnet18_voc21_lad.txt", _deeplabv3_head), ("psp_resnet18_voc21_lad.txt", _psp_head)],
)
def test_logits_match_reference_forward(filename: str, head) -> None:
    sd = _ref_sd(filename, seed=3)
    model, _ = convert_reference_checkpoint(sd)
    model.eval()
    x = torch.randn(2, 4, 65, 65) * 50  # reference_bgr-like magnitudes
    with torch.no_grad():
        feats = _resnet18_v1s_os8(sd, x)
        expected = head(sd, feats[-1])
        out = model(x)
        ours_feats = model.backbone(x)
        aux = model.aux_head(ours_feats[-2])
    assert out.logits.shape == expected.shape == (2, 21, 9, 9)
    torch.testing.assert_close(out.logits, expected, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(aux, _aux_head(sd, feats[-2]), atol=1e-5, rtol=1e-5)
    assert out.logits.std() > 0.1  # a non-trivial comparison


@needs_ref
def test_convert_cli_writes_a_safe_ladseg_checkpoint(tmp_path) -> None:
    src, dst = tmp_path / "ref.pth", tmp_path / "out" / "ladseg.pth"
    sd = _ref_sd("psp_resnet18_voc21_lad.txt")
    torch.save(sd, src)
    assert cli_main(["convert", str(src), str(dst)]) == 0
    ckpt = torch.load(dst, weights_only=True)
    meta = ckpt["meta"]
    assert meta["normalize"] == "reference_bgr" and meta["source"] == str(src) and meta["class_names"] is None
    assert meta["spec"]["name"] == "pspnet" and meta["spec"]["in_channels"] == 4
    assert torch.equal(ckpt["model"]["decode_head.classifier.weight"], sd["head.classifier.weight"])
    assert sorted(p.name for p in dst.parent.iterdir()) == ["ladseg.pth"]  # no temp file left
    assert load_reference_checkpoint(src).meta["source"] == str(src)
    torch.save({"conv1.weight": torch.zeros(1)}, tmp_path / "bad.pth")
    assert cli_main(["convert", str(tmp_path / "bad.pth"), str(tmp_path / "x.pth")]) == 2
    assert not (tmp_path / "x.pth").exists()

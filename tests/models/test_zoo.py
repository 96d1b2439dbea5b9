"""Every registered (model, backbone) pair builds, runs forward + backward, and rebuilds from its spec."""

from __future__ import annotations

import pytest
import torch
from ref_checkpoints import REF_DIR, declared_count

from ladseg.cli import main as cli_main
from ladseg.errors import ConfigError
from ladseg.models import BACKBONES, HEADS, MODELS, build_model, list_models
from ladseg.models.complexity import count_flops, count_macs, count_parameters

HEAVY = ("resnet50", "resnet101")  # CPU budget: these get one small no-grad forward per backbone


def _light_pairs() -> list[tuple[str, str]]:
    return [(n, b) for n, b in list_models() if not b.startswith(HEAVY)]


@pytest.mark.parametrize("in_channels", [3, 4])
@pytest.mark.parametrize(("name", "backbone"), _light_pairs())
def test_forward_backward(name: str, backbone: str, in_channels: int) -> None:
    model = build_model(name, backbone, num_classes=5, in_channels=in_channels).train()
    size = 64 if in_channels == 4 else 32  # the LAD teacher case at full test size, plain case smaller
    out = model(torch.randn(2, in_channels, size, size))
    # heads on the last stage predict at its stride; STDC's BiSeNet decoder fuses down to 1/8
    stride = 8 if name == "stdc" else model.backbone.strides[-1]
    assert out.logits.shape == (2, 5, size // stride, size // stride)
    assert out.features.dim() == 4 and out.features.shape[0] == 2
    aux = out.aux_logits
    assert aux is not None and aux.shape[:2] == (2, 5)
    if model.aux_head is not None:  # FCN aux on feats[-2]
        aux_stride = model.backbone.strides[-2]
        assert aux.shape[-2:] == (size // aux_stride, size // aux_stride)
    (out.logits.mean() + aux.mean()).backward()
    grad = model.backbone.first_conv.weight.grad
    assert grad is not None and grad.shape[1] == in_channels


@pytest.mark.parametrize("backbone", ["resnet50", "resnet50_tv", "resnet101", "resnet101_tv"])
def test_large_resnets_build_and_run_small(backbone: str) -> None:
    model = build_model("pspnet", backbone, num_classes=3, in_channels=4).eval()
    assert model.backbone.out_channels == (256, 512, 1024, 2048)
    assert model.decode_head.channels == 512 and model.aux_head.channels == 256
    if backbone == "resnet50":
        with torch.no_grad():
            out = model(torch.randn(1, 4, 32, 32))
        assert out.logits.shape == (1, 3, 4, 4) and out.aux_logits is None


def test_every_model_has_a_pair() -> None:
    pairs = list_models()
    names = {n for n, _ in pairs}
    assert {"fcn", "pspnet", "deeplabv3"} <= names
    assert all(MODELS.get(n).fits(b) for n, b in pairs)
    assert ("stdc", "resnet18") not in pairs
    assert all(b in BACKBONES and MODELS.get(n).head in HEADS for n, b in pairs)


def test_spec_rebuilds_the_same_architecture() -> None:
    model = build_model("pspnet", "resnet18", 7, in_channels=4, aux=False, head={"channels": 32})
    clone = build_model(**model.spec)
    assert clone.spec == model.spec
    assert {k: v.shape for k, v in clone.state_dict().items()} == {
        k: v.shape for k, v in model.state_dict().items()
    }
    assert clone.aux_head is None and clone.decode_head.channels == 32
    assert MODELS.build("pspnet", **{k: v for k, v in model.spec.items() if k != "name"}).spec == model.spec
    clone.load_state_dict(model.state_dict())  # strict


@pytest.mark.parametrize(
    ("os_", "strides", "rates"),
    [(8, (4, 8, 8, 8), (12, 24, 36)), (16, (4, 8, 16, 16), (6, 12, 18)), (32, (4, 8, 16, 32), (3, 6, 9))],
)
def test_output_stride(os_: int, strides: tuple[int, ...], rates: tuple[int, ...]) -> None:
    model = build_model("deeplabv3", "resnet18", 3, output_stride=os_).eval()
    assert model.backbone.strides == strides
    assert model.decode_head.rates == rates
    assert [b[0].dilation[0] for b in model.decode_head.aspp.branches[1:]] == list(rates)
    feats = model.backbone(torch.randn(1, 3, 64, 64))
    assert [64 // f.shape[-1] for f in feats] == list(strides)


def test_reference_dilations_resnet18_and_101() -> None:
    r18 = BACKBONES.build("resnet18")
    assert [(b.conv1.dilation[0], b.conv2.dilation[0]) for b in r18.layer3] == [(1, 2), (2, 2)]
    assert [(b.conv1.dilation[0], b.conv2.dilation[0]) for b in r18.layer4] == [(2, 4), (4, 4)]
    r101 = BACKBONES.build("resnet101")
    assert [b.conv2.dilation[0] for b in r101.layer3] == [1] + [2] * 22
    assert [b.conv2.dilation[0] for b in r101.layer4] == [2, 4, 4]
    assert r101.layer4[0].downsample[0].stride == (1, 1) and r101.layer2[0].downsample[0].stride == (2, 2)


@pytest.mark.parametrize(
    ("name", "backbone", "ref_file", "count"),
    [
        ("deeplabv3", "resnet18", "deeplabv3_resnet18_voc21_lad.txt", 13_608_938),
        ("pspnet", "resnet18", "psp_resnet18_voc21_lad.txt", 12_920_298),
        ("deeplabv3", "resnet101", "deeplabv3_resnet101_voc21_lad.txt", 61_120_554),
        ("pspnet", "resnet101", None, 68_074_282),
    ],
)
def test_parameter_parity_with_reference(name: str, backbone: str, ref_file: str | None, count: int) -> None:
    model = build_model(name, backbone, 21, in_channels=4, aux=True)
    assert count_parameters(model) == count
    if ref_file and (REF_DIR / ref_file).exists():
        assert declared_count(REF_DIR / ref_file) == count


def test_head_defaults_follow_reference() -> None:
    r18 = build_model("pspnet", "resnet18", 21)
    assert r18.decode_head.channels == 128 and r18.aux_head.channels == 64
    assert build_model("deeplabv3", "resnet18", 21).decode_head.channels == 128
    assert build_model("deeplabv3", "resnet50", 21).decode_head.channels == 256
    assert build_model("deeplabv3", "resnet18", 21).decode_head.aspp.dropout.p == 0.01


def test_bad_names_and_arguments_are_config_errors() -> None:
    with pytest.raises(ConfigError, match="valid names: .*deeplabv3"):
        build_model("deeplab", "resnet18", 21)
    with pytest.raises(ConfigError, match="valid names: .*resnet18"):
        build_model("pspnet", "resnet19", 21)
    with pytest.raises(ConfigError, match="output_stride"):
        build_model("pspnet", "resnet18", 21, output_stride=4)
    with pytest.raises(ConfigError, match="bad arguments for head"):
        build_model("pspnet", "resnet18", 21, head={"chanels": 3})
    with pytest.raises(ConfigError, match="in_channels"):
        build_model("pspnet", "resnet18", 21, in_channels=2)


def test_flops_counts_convolutions() -> None:
    model = build_model("fcn", "resnet18", 2, aux=False)
    macs = count_macs(model, (1, 3, 32, 32))
    assert count_flops(model, (1, 3, 32, 32)) == 2 * macs
    # doubling the pixels doubles the conv work (no global-pool branch in FCN)
    assert count_macs(model, (1, 3, 64, 32)) == pytest.approx(2 * macs, rel=1e-6)
    stem = model.backbone.conv1
    assert macs > stem.weight.numel() * 16 * 16
    assert model.training  # mode restored


def test_info_cli(capsys) -> None:
    argv = "info pspnet --backbone resnet18 --num-classes 21 --in-channels 4 --size 64 64".split()
    assert cli_main(argv) == 0
    out = capsys.readouterr().out
    assert "12,920,298" in out and "GMACs" in out
    assert cli_main(["info", "--list"]) == 0
    assert "deeplabv3 --backbone resnet18" in capsys.readouterr().out
    assert cli_main(["info", "nonet"]) == 2


@pytest.mark.parametrize(
    "name, backbone",
    [
        ("fcn", "resnet18"),
        ("pspnet", "mobilenetv2"),
        ("deeplabv3", "efficientnet_lite0"),
        ("ocrnet", "resnet18"),
        ("stdc", "stdc1"),
    ],
)
def test_initial_logits_are_small(name: str, backbone: str) -> None:
    """Classifiers start at N(0, 0.01^2): the initial CE is close to ln K, not twice it."""
    import math

    model = build_model(name, backbone, num_classes=8, aux=True).train()
    out = model(torch.randn(2, 3, 64, 64))
    assert out.logits.std().item() < 0.5
    ce = torch.nn.functional.cross_entropy(out.logits, torch.randint(0, 8, (2, *out.logits.shape[-2:])))
    assert abs(ce.item() - math.log(8)) < 0.3

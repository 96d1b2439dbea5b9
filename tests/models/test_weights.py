"""First-conv widening, safe weight reading and pretrained loading in every supported format."""

from __future__ import annotations

import pickle

import pytest
import torch
import torchvision
from ref_checkpoints import REF_DIR, parse_key_file, random_state_dict

from ladseg.errors import CheckpointError
from ladseg.models import BACKBONES
from ladseg.models.weights import adapt_input_conv, load_pretrained, read_weights_file


def test_adapt_keeps_image_channels_and_draws_extra_from_n_0_01() -> None:
    w = torch.randn(256, 3, 7, 7)
    g = torch.Generator().manual_seed(1)
    out = adapt_input_conv(w, 5, generator=g)
    assert out.shape == (256, 5, 7, 7)
    assert torch.equal(out[:, :3], w)
    extra = out[:, 3:]
    assert abs(extra.mean().item()) < 0.01
    assert extra.std().item() == pytest.approx(0.1, rel=0.05)
    wider = adapt_input_conv(w, 4, std=0.5, generator=torch.Generator().manual_seed(1))
    assert wider[:, 3:].std().item() == pytest.approx(0.5, rel=0.05)


def test_adapt_same_width_is_identity_and_fewer_channels_fail() -> None:
    w = torch.randn(8, 3, 3, 3)
    assert adapt_input_conv(w, 3) is w
    with pytest.raises(CheckpointError, match="fewer than the 3 image channels"):
        adapt_input_conv(w, 2)
    with pytest.raises(CheckpointError, match="3-channel"):
        adapt_input_conv(torch.randn(8, 4, 3, 3), 5)


def _check_loaded(model: torch.nn.Module, sd: dict[str, torch.Tensor], in_channels: int) -> None:
    own = model.state_dict()
    for key, value in sd.items():
        if key.startswith("fc."):
            assert key not in own
            continue
        if key == "conv1.weight":
            assert own[key].shape[1] == in_channels
            assert torch.equal(own[key][:, :3], value)
        else:
            assert torch.equal(own[key], value), key


def test_torchvision_file_loads_into_tv_backbone(tmp_path) -> None:
    sd = torchvision.models.resnet18(weights=None).state_dict()  # torchvision key names incl. fc.*
    torch.save(sd, tmp_path / "tv.pth")
    model = BACKBONES.build("resnet18_tv", in_channels=4, pretrained=str(tmp_path / "tv.pth"))
    _check_loaded(model, sd, 4)


def test_deep_stem_file_loads_into_resnet18(tmp_path) -> None:
    path = REF_DIR / "resnet18_deep_stem_imagenet.txt"
    if not path.exists():
        pytest.skip("reference key lists not available")
    sd = random_state_dict(parse_key_file(path))
    torch.save(sd, tmp_path / "deep.pth")
    model = BACKBONES.build("resnet18", in_channels=4, pretrained=str(tmp_path / "deep.pth"))
    _check_loaded(model, sd, 4)


def test_wrapped_checkpoint_with_module_prefix_loads(tmp_path) -> None:
    src = BACKBONES.build("resnet18", in_channels=3)
    for p in src.parameters():
        torch.nn.init.normal_(p)
    sd = src.state_dict()
    torch.save({"state_dict": {f"module.{k}": v for k, v in sd.items()}, "epoch": 3}, tmp_path / "w.pth")
    assert set(read_weights_file(tmp_path / "w.pth")) == set(sd)
    model = BACKBONES.build("resnet18", in_channels=3, pretrained=str(tmp_path / "w.pth"))
    _check_loaded(model, sd, 3)


def test_wrong_stem_is_named(tmp_path) -> None:
    torch.save(torchvision.models.resnet18(weights=None).state_dict(), tmp_path / "tv.pth")
    with pytest.raises(CheckpointError, match="_tv"):
        BACKBONES.build("resnet18", pretrained=str(tmp_path / "tv.pth"))


def test_mismatched_file_names_keys_and_shapes(tmp_path) -> None:
    sd = torchvision.models.resnet50(weights=None).state_dict()
    torch.save(sd, tmp_path / "r50.pth")
    with pytest.raises(CheckpointError, match=r"layer1\.0\.conv3\.weight") as info:
        BACKBONES.build("resnet18_tv", pretrained=str(tmp_path / "r50.pth"))
    assert "unexpected keys" in str(info.value) and "shape mismatches" in str(info.value)


def test_load_pretrained_non_strict_skips_misfits() -> None:
    model = BACKBONES.build("resnet18_tv", in_channels=3)
    before = model.layer4[0].conv1.weight.clone()
    sd = {"conv1.weight": torch.ones(64, 3, 7, 7), "layer4.0.conv1.weight": torch.ones(1, 1, 1, 1)}
    load_pretrained(model, sd, first_conv_key="conv1.weight", in_channels=3, strict=False)
    assert torch.equal(model.conv1.weight, torch.ones(64, 3, 7, 7))
    assert torch.equal(model.layer4[0].conv1.weight, before)


def test_missing_and_non_weight_files(tmp_path) -> None:
    with pytest.raises(CheckpointError, match="weights file not found"):
        read_weights_file(tmp_path / "nope.pth")
    (tmp_path / "junk.pth").write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError, match="junk.pth"):
        read_weights_file(tmp_path / "junk.pth")
    torch.save({"epoch": 3, "lr": 0.1}, tmp_path / "meta.pth")
    with pytest.raises(CheckpointError, match="no state dict"):
        read_weights_file(tmp_path / "meta.pth")


class Payload:
    """A custom class: unpickling it needs code, which weights_only refuses."""

    def __init__(self) -> None:
        self.weight = torch.zeros(2)


def test_pickle_with_code_is_refused_as_unsafe(tmp_path) -> None:
    path = tmp_path / "evil.pth"
    torch.save({"state_dict": Payload()}, path, pickle_module=pickle)
    with pytest.raises(CheckpointError, match="unsafe"):
        read_weights_file(path)

"""``model.label_branch``: a LAD teacher's label channels through RITM's Conv1S branch (issue 23, item 1)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from ladseg.engine.checkpoint import build_model_from_checkpoint, load_weights_into, save_checkpoint
from ladseg.engine.config import load_config
from ladseg.engine.inputs import input_normalization
from ladseg.errors import CheckpointError, ConfigError
from ladseg.methods import build_method
from ladseg.models import BACKBONES, build_model
from ladseg.models.convert import to_image_only
from ladseg.models.label_branch import HIDDEN, SCALE_INIT

CONFIGS = Path(__file__).resolve().parents[2] / "src" / "ladseg" / "configs"
IMAGENET = input_normalization("imagenet")
HEAVY = ("resnet50", "resnet101")  # built and checked, run once at a small size


def _pair(backbone: str) -> str:
    return "stdc" if backbone.startswith("stdc") else "fcn"


def _twins(name: str = "fcn", backbone: str = "resnet18", label_channels: int = 1):
    """(teacher with a label branch, image-only model with the teacher's other weights)."""
    torch.manual_seed(0)
    teacher = build_model(
        name, backbone, 3, in_channels=3 + label_channels, label_branch=True, head={"channels": 8}
    )
    plain = build_model(name, backbone, 3, head={"channels": 8})
    plain.load_state_dict(
        {k: v for k, v in teacher.state_dict().items() if not k.startswith("label_branch.")}
    )
    return teacher.eval(), plain.eval()


@pytest.mark.parametrize("backbone", BACKBONES.names())
def test_every_backbone_takes_a_branch_at_its_stem(backbone: str) -> None:
    model = build_model(_pair(backbone), backbone, 5, in_channels=5, label_branch=True).eval()
    bb, branch = model.backbone, model.label_branch
    assert model.in_channels == 5 and bb.in_channels == 3 and branch.in_channels == 2
    assert bb.first_conv.weight.shape[1] == 3  # the (pretrained) first conv reads the image alone
    assert branch.conv1.weight.shape == (HIDDEN, 2, 1, 1)
    assert branch.conv2.weight.shape == (bb.stem_channels, HIDDEN, 3, 3) and branch.conv2.stride == (2, 2)
    assert branch.conv1.bias is None and branch.conv2.bias is None  # a zero label adds exactly nothing
    assert branch.scale.item() == pytest.approx(SCALE_INIT)
    backbone_ids = {id(p) for p in bb.parameters()}  # outside the backbone: optim.head_lr_mult's group
    assert not backbone_ids & {id(p) for p in branch.parameters()}
    size = 32 if backbone.startswith(HEAVY) else 64
    x = torch.randn(1, 5, size, size)
    with torch.no_grad():
        stem = bb.forward_stem(x[:, :3])
        assert stem.shape == (1, bb.stem_channels, size // bb.stem_stride, size // bb.stem_stride)
        assert branch(x[:, 3:]).shape == stem.shape
        feats = model.backbone_features(x)
        assert [f.shape[1] for f in feats] == list(bb.out_channels)
        assert [size // f.shape[-1] for f in feats] == list(bb.strides)
        # the split forward is the backbone's own forward
        assert all(torch.equal(a, b) for a, b in zip(bb.forward_stages(stem), bb(x[:, :3]), strict=True))


def test_without_the_option_nothing_changes() -> None:
    model = build_model("pspnet", "stdc1", 3, in_channels=4)
    assert model.label_branch is None and "label_branch" not in model.spec
    assert not any(k.startswith("label_branch") for k in model.state_dict())
    assert model.backbone.first_conv.weight.shape[1] == 4


@pytest.mark.parametrize(
    ("name", "backbone"), [("fcn", "resnet18"), ("stdc", "stdc1"), ("deeplabv3", "mobilenetv2")]
)
def test_zero_label_or_zero_scale_is_the_image_only_network(name: str, backbone: str) -> None:
    teacher, plain = _twins(name, backbone)
    x = torch.randn(2, 4, 64, 64)
    with torch.no_grad():
        image_only = plain(x[:, :3]).logits
        zero_label = torch.cat([x[:, :3], torch.zeros_like(x[:, 3:])], 1)
        assert torch.equal(teacher(zero_label).logits, image_only)
        change = (teacher(x).logits - image_only).abs().max()  # the label does reach the output
        assert change > 1e-3 * image_only.abs().max()
        teacher.label_branch.scale.zero_()
        assert torch.equal(teacher(x).logits, image_only)
        assert torch.equal(teacher(zero_label).logits, image_only)


def test_a_teacher_with_a_branch_refuses_an_image_alone() -> None:
    teacher, _ = _twins(label_channels=2)
    with pytest.raises(RuntimeError, match="reads 5 input channels"):
        teacher(torch.randn(1, 3, 32, 32))


def test_checkpoint_round_trip_and_image_only_conversion(tmp_path: Path) -> None:
    teacher, plain = _twins("pspnet", "stdc1")
    with torch.no_grad():
        teacher.label_branch.scale.fill_(0.7)  # a trained branch
    meta = {"spec": teacher.spec, "class_names": ["a", "b", "c"], "normalize": "imagenet"}
    save_checkpoint(tmp_path / "t.pth", {"model": teacher.state_dict(), "meta": meta})
    rebuilt, got = build_model_from_checkpoint(tmp_path / "t.pth")
    assert got["spec"]["label_branch"] is True and got["spec"]["in_channels"] == 4
    assert rebuilt.label_branch is not None and rebuilt.in_channels == 4
    x = torch.randn(1, 4, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(rebuilt(x).logits, teacher(x).logits, rtol=0, atol=0)
    # a plain 4-channel teacher's checkpoint does not load into a branch teacher, and says why
    widened = build_model("pspnet", "stdc1", 3, in_channels=4, head={"channels": 8})
    with pytest.raises(CheckpointError, match="label_branch: checkpoint None vs model True"):
        load_weights_into(teacher, _save(tmp_path / "w.pth", widened))
    # `ladseg convert --image-only`: the branch goes; exactly the teacher with a zero label
    image_only, dropped = to_image_only(rebuilt)
    assert dropped == 1 and image_only.in_channels == 3 and "label_branch" not in image_only.spec
    with torch.no_grad():
        zero = torch.cat([x[:, :3], torch.zeros_like(x[:, 3:])], 1)
        assert torch.equal(image_only.eval()(x[:, :3]).logits, teacher(zero).logits)
        assert torch.equal(image_only(x[:, :3]).logits, plain(x[:, :3]).logits)


def _save(path: Path, model: torch.nn.Module) -> Path:
    save_checkpoint(
        path, {"model": model.state_dict(), "meta": {"spec": model.spec, "normalize": "imagenet"}}
    )
    return path


def test_a_branch_teacher_starts_from_an_image_only_checkpoint(tmp_path: Path) -> None:
    """``train.init_checkpoint`` (widen_input): the baseline's weights, the branch's own initial ones."""
    teacher, plain = _twins()
    baseline = build_model("fcn", "resnet18", 3, head={"channels": 8})
    load_weights_into(teacher, _save(tmp_path / "b.pth", baseline), widen_input=True)
    assert teacher.label_branch.scale.item() == pytest.approx(SCALE_INIT)
    x = torch.randn(1, 4, 32, 32)
    with torch.no_grad():
        zero = torch.cat([x[:, :3], torch.zeros_like(x[:, 3:])], 1)
        assert torch.equal(teacher.eval()(zero).logits, baseline.eval()(x[:, :3]).logits)
    with pytest.raises(CheckpointError, match="label_branch"):  # without widen_input: a plain mismatch
        load_weights_into(teacher, tmp_path / "b.pth")


def test_the_config_refuses_a_branch_without_label_channels() -> None:
    teacher_cfg = CONFIGS / "camvid" / "lad_teacher_stdc1_camvid_half.yaml"
    assert load_config(teacher_cfg, ["model.label_branch=true"]).model.label_branch is True
    with pytest.raises(ConfigError, match=r"model\.label_branch.*reads 3"):
        load_config(CONFIGS / "camvid" / "stdc1_supervised_camvid_half.yaml", ["model.label_branch=true"])
    with pytest.raises(ConfigError, match=r"teacher\.model\.label_branch"):
        load_config(
            CONFIGS / "camvid" / "kd_cwd_effl2_stdc1_camvid_half.yaml",
            ["teacher.model.label_branch=true", "teacher.model.in_channels=3", "teacher.in_channels=null"],
        )
    with pytest.raises(ConfigError, match="in_channels is 3"):
        build_model("fcn", "resnet18", 3, label_branch=True)


def _batch(n: int = 2, size: int = 32) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    return {
        "image": torch.randn(n, 3, size, size, generator=g),
        "mask": torch.randint(0, 3, (n, size, size), generator=g),
    }


def test_lad_teacher_trains_the_branch_and_distils_from_it() -> None:
    teacher, _ = _twins()
    method = build_method("lad_teacher", {}, teacher.train(), 3, data_normalization=IMAGENET)
    out = method(_batch())
    out["loss"].backward()
    branch = teacher.label_branch
    assert branch.scale.grad is not None and branch.scale.grad.abs() > 0
    assert branch.conv1.weight.grad is not None and branch.conv1.weight.grad.abs().sum() > 0
    # a distillation loss that reads the teacher's auxiliary logits runs the teacher's parts itself
    student = build_model("fcn", "resnet18", 3, head={"channels": 8})
    distill = build_method(
        "distill",
        {"kd_losses": [{"name": "dist"}]},
        student,
        3,
        teacher=teacher.eval(),
        data_normalization=IMAGENET,
    )
    assert torch.isfinite(distill(_batch())["kd_dist"])

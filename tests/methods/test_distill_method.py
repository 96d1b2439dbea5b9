"""The distill method: LAD teacher input, loss terms, learning, frozen teacher, what is saved/exported."""

from __future__ import annotations

import pytest
import torch
from conftest import make_tiny, toy_batch

from ladseg.data.transforms import NORMALIZATIONS
from ladseg.engine.inputs import input_normalization
from ladseg.errors import ConfigError
from ladseg.losses.cwd import cwd_loss
from ladseg.methods import build_method
from ladseg.methods.label_encoding import fixed_codes

IMAGENET = input_normalization("imagenet")


def _distill(teacher_in: int = 4, **params: object):  # noqa: ANN202
    teacher = make_tiny(in_channels=teacher_in, width=24)
    return build_method(
        "distill", dict(params), make_tiny(), num_classes=3, teacher=teacher, data_normalization=IMAGENET
    )


def test_lad_teacher_reads_fixed_codes(batch: dict) -> None:
    method = _distill()
    x = method.teacher_input(batch)
    assert x.shape == (2, 4, 16, 16) and torch.equal(x[:, :3], batch["image"])
    codes = fixed_codes(3)[torch.where(batch["mask"] == 255, 3, batch["mask"])]
    scale = method.teacher_encoder.scale  # scale: auto, nothing declared -> ImageNet's label scale
    assert scale == pytest.approx(NORMALIZATIONS["imagenet"].label_scale)
    assert (x[:, 3] / scale - codes).std().item() == pytest.approx(0.02, rel=0.25)  # reference noise 0.02
    plain = _distill(teacher_in=3)
    assert torch.equal(plain.teacher_input(batch), batch["image"])  # an ordinary teacher sees the image only


def test_terms_add_up_with_reference_weights(batch: dict) -> None:
    method = _distill()
    torch.manual_seed(1)
    out = method(batch)
    assert set(out) == {"loss", "ce", "aux", "kd_cwd"}
    assert out["loss"].item() == pytest.approx(
        (out["ce"] + 0.02 * out["aux"] + 3.0 * out["kd_cwd"]).item(), rel=1e-6
    )
    torch.manual_seed(1)
    t = method.teacher(method.teacher_input(batch))
    s = method.network(batch["image"])
    assert out["kd_cwd"].item() == pytest.approx(cwd_loss(s.logits, t.logits, 4.0).item(), rel=1e-5)


def test_teacher_is_frozen_and_outside_the_module_tree(batch: dict) -> None:
    method = _distill(
        kd_losses=[
            {"name": "cwd"},
            {"name": "cwd_feature", "normalize_by": "teacher", "weight": 1.0},
            {"name": "kd"},
        ]
    )
    teacher = method.teacher
    method.train()
    assert not teacher.training and all(not p.requires_grad for p in teacher.parameters())
    names = dict(method.named_parameters())
    assert not any(name.startswith("_teacher") for name in names)
    assert "loss_modules.1.adapter.0.weight" in names  # 16 -> 24 channel adapter is trained and saved
    assert "loss_modules.1.adapter.0.weight" in method.state_dict()
    exported = method.export_model()
    assert exported is method.network and not any("adapter" in k for k in exported.state_dict())
    out = method(batch)
    assert set(out) == {"loss", "ce", "aux", "kd_cwd", "kd_cwd_feature", "kd_kd"}
    out["loss"].backward()
    assert all(p.grad is None for p in teacher.parameters())
    assert method.loss_modules[1].adapter[0].weight.grad is not None
    assert method.kd_weights == [3.0, 1.0, 1.0]


def test_a_few_steps_lower_the_loss() -> None:
    method = _distill()
    batch = toy_batch()
    opt = torch.optim.SGD(method.parameters(), lr=0.1, momentum=0.9)

    def loss() -> float:
        torch.manual_seed(0)
        return method(batch)["loss"].item()

    before = loss()
    for _ in range(10):
        opt.zero_grad()
        method(batch)["loss"].backward()
        opt.step()
    assert loss() < 0.9 * before  # the teacher is untrained (near-uniform), so mostly CE goes down


def test_distill_errors() -> None:
    teacher = make_tiny(in_channels=5)
    with pytest.raises(ConfigError, match="3 \\+ 1 = 4"):
        build_method("distill", {}, make_tiny(), 3, teacher=teacher, data_normalization=IMAGENET)
    build_method(
        "distill",
        {"teacher_label": {"kind": "onehot"}},
        make_tiny(),
        3,
        teacher=make_tiny(in_channels=7),
        data_normalization=IMAGENET,
    )
    with pytest.raises(ConfigError, match=r"'method.kd_losses\[0\].name': expected one of .*got 'cwdd'"):
        build_method(
            "distill",
            {"kd_losses": [{"name": "cwdd"}]},
            make_tiny(),
            3,
            teacher=make_tiny(in_channels=4),
            data_normalization=IMAGENET,
        )
    with pytest.raises(ConfigError, match=r"kd_losses\[0\]"):
        build_method(
            "distill",
            {"kd_losses": [{"name": "cwd", "temp": 2}]},
            make_tiny(),
            3,
            teacher=make_tiny(in_channels=4),
            data_normalization=IMAGENET,
        )
    with pytest.raises(ConfigError, match="3 image channels"):
        build_method(
            "distill",
            {},
            make_tiny(in_channels=4),
            3,
            teacher=make_tiny(in_channels=4),
            data_normalization=IMAGENET,
        )

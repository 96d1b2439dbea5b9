"""One CPU training step of the ``distill`` method with each baseline.

Tiny segmentors (teacher 12 channels at 1/2, student 8 channels at 1/4) keep the recipes' steps fast;
one step with the library's real ResNet-18 models checks the pairing the configs use.
"""

from __future__ import annotations

from typing import Any

import pytest
import torch
from kd_loss_helpers import SMALL_MEMORY, tiny_segmentor

from ladseg.engine.inputs import input_normalization
from ladseg.methods import build_method
from ladseg.models import Segmentor, build_model

IMAGENET = input_normalization("imagenet")


RECIPES: dict[str, list[dict[str, Any]]] = {
    "at": [{"name": "at"}],
    "fitnets": [{"name": "fitnets"}],
    "cwd_feature": [{"name": "cwd_feature"}, {"name": "cwd"}],
    "dist": [{"name": "dist"}],
    "skd": [{"name": "skd", "adversarial": True}, {"name": "kd", "weight": 10.0}],
    "ifvd": [{"name": "ifvd"}, {"name": "kd", "weight": 10.0}],
    "cirkd": [{"name": "cirkd", **SMALL_MEMORY}, {"name": "kd"}],
    "af_dcd": [{"name": "af_dcd", "partitions": 4}, {"name": "kd"}],  # the tiny teacher's width 12
}


def _step(method: str, student: Segmentor, teacher: Segmentor) -> None:
    m = build_method(
        "distill",
        {"kd_losses": RECIPES[method], "aux_weight": 0.4},
        student,
        5,
        teacher=teacher,
        data_normalization=IMAGENET,
    )
    m.train()
    opt = torch.optim.SGD([p for p in m.parameters() if p.requires_grad], lr=1e-3)
    batch = {"image": torch.randn(2, 3, 32, 32), "mask": torch.randint(0, 5, (2, 32, 32))}
    batch["mask"][:, :3] = 255
    out = m(batch)
    assert torch.isfinite(out["loss"])
    kd_terms = [k for k in out if k.startswith("kd_")]
    assert len(kd_terms) == len(RECIPES[method]) and all(torch.isfinite(out[k]) for k in kd_terms)
    opt.zero_grad()
    out["loss"].backward()
    assert all(p.grad is None for p in teacher.parameters())
    for (
        name,
        p,
    ) in m.loss_modules.named_parameters():  # adapters / projectors / critics train with the student
        assert p.grad is not None, name
    assert student.backbone.first_conv.weight.grad.abs().sum() > 0
    opt.step()


@pytest.mark.parametrize("method", sorted(RECIPES))
def test_one_training_step_tiny(method: str) -> None:
    _step(method, tiny_segmentor(8, 5, stride2=2), tiny_segmentor(12, 5, stride2=1))


def test_one_training_step_resnet18_models() -> None:
    teacher = build_model("deeplabv3", "resnet18", num_classes=5, in_channels=3, aux=True, output_stride=16)
    student = build_model("fcn", "resnet18", num_classes=5, in_channels=3, aux=True, output_stride=32)
    _step("fitnets", student, teacher)

"""One CPU training step of the ``distill`` method with each baseline, on tiny real models."""

from __future__ import annotations

from typing import Any

import pytest
import torch
from kd_loss_helpers import SMALL_MEMORY

from ladseg.methods import build_method
from ladseg.models import build_model

RECIPES: dict[str, list[dict[str, Any]]] = {
    "at": [{"name": "at"}],
    "fitnets": [{"name": "fitnets"}],
    "cwd_feature": [{"name": "cwd_feature"}, {"name": "cwd"}],
    "dist": [{"name": "dist"}],
    "skd": [{"name": "skd", "adversarial": True}, {"name": "kd", "weight": 10.0}],
    "ifvd": [{"name": "ifvd"}, {"name": "kd", "weight": 10.0}],
    "cirkd": [{"name": "cirkd", **SMALL_MEMORY}, {"name": "kd"}],
}


@pytest.fixture(scope="module")
def models() -> tuple[torch.nn.Module, torch.nn.Module]:
    torch.manual_seed(0)
    teacher = build_model("deeplabv3", "resnet18", num_classes=5, in_channels=3, aux=True)
    student = build_model("fcn", "resnet18", num_classes=5, in_channels=3, aux=True)
    return student, teacher


@pytest.mark.parametrize("method", sorted(RECIPES))
def test_one_training_step(method: str, models: tuple[torch.nn.Module, torch.nn.Module]) -> None:
    student, teacher = models
    m = build_method("distill", {"kd_losses": RECIPES[method], "aux_weight": 0.4}, student, 5, teacher=teacher)
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
    for name, p in m.kd_losses.named_parameters():  # adapters / projectors / critics train with the student
        assert p.grad is not None, name
    assert student.backbone.first_conv.weight.grad.abs().sum() > 0
    opt.step()

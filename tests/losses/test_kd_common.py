"""Properties every baseline loss must have: zero on identical inputs, gradients only into the student
side, any width/size pairing, registration with documented defaults."""

from __future__ import annotations

import inspect

import pytest
import torch
from kd_loss_helpers import OWN_LOSSES, random_pair, seg

from ladseg.errors import ConfigError
from ladseg.losses import LOSSES, build_loss


def test_every_kd_module_loss_is_covered_here() -> None:
    logit_losses = {"cwd", "kd", "mse"}  # tested in tests/methods/test_distill_losses.py
    adversarial = {"adversarial"}  # a GAN term, not 0 for a perfect student: tests/losses/test_adversarial.py
    projected = {
        "af_dcd"
    }  # reads the backbone through a projector, not 0 for a perfect student: test_kd_af_dcd.py
    learned = {"maskd"}  # needs a file of tokens learned on the teacher: its properties in test_kd_maskd.py
    assert set(LOSSES.names()) - logit_losses - adversarial - projected - learned == set(OWN_LOSSES)
    for name in LOSSES.names():  # each loss lives in the file named for it
        module = inspect.getmodule(LOSSES.get(name)).__name__
        assert module.startswith("ladseg.losses.") and name.startswith(module.rsplit(".", 1)[1]), (
            name,
            module,
        )


@pytest.mark.parametrize("name", sorted(OWN_LOSSES))
def test_zero_when_student_equals_teacher(name: str) -> None:
    loss = build_loss(name, 6, 6, 4, **OWN_LOSSES[name])
    feats, logits = torch.randn(2, 6, 8, 8), torch.randn(2, 4, 8, 8)
    mask = torch.randint(0, 4, (2, 32, 32))
    mask[0, :4] = 255
    value = loss(seg(feats, logits), seg(feats.clone(), logits.clone()), mask)
    assert value.dim() == 0
    assert value.abs().item() < 1e-5, f"{name}: {value.item()}"


@pytest.mark.parametrize("name", sorted(OWN_LOSSES))
def test_gradients_reach_student_and_adapters_never_teacher(name: str) -> None:
    torch.manual_seed(1)
    s, t, mask = random_pair()
    loss = build_loss(name, 6, 10, 4, **OWN_LOSSES[name])
    value = loss(s, t, mask)
    assert torch.isfinite(value) and value.item() > 0
    value.backward()
    assert t.features.grad is None and t.logits.grad is None
    student_grads = [g for g in (s.features.grad, s.logits.grad) if g is not None]
    assert student_grads and any(g.abs().sum() > 0 for g in student_grads)
    for pname, p in loss.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, (
            f"{name}: adapter parameter {pname} got no gradient"
        )


@pytest.mark.parametrize("name", sorted(OWN_LOSSES))
def test_default_weight_and_bad_parameter(name: str) -> None:
    assert LOSSES.get(name).default_weight > 0
    with pytest.raises(ConfigError, match="unknown config key"):
        build_loss(name, 6, 10, 4, not_a_parameter=1)


@pytest.mark.parametrize(
    ("name", "params"),
    [
        ("cwd_feature", {"tau": 0.0}),
        ("dist", {"tau": -1.0}),
        ("skd", {"pool_scale": 1.5}),
        ("cirkd_memory", {"pixel_memory_size": 0}),
        ("cirkd_minibatch", {"tau": 0.0}),
        ("fitnets", {"adapter": False}),  # widths 6 and 10 cannot meet without an adapter
    ],
)
def test_bad_values_are_config_errors(name: str, params: dict) -> None:
    with pytest.raises(ConfigError):
        build_loss(name, 6, 10, 4, **params)

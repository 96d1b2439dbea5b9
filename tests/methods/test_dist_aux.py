"""DIST distils the auxiliary logits too, weight 0.4, as its official segmentation code (issue 14, item 13)."""

from __future__ import annotations

import pytest
import torch
from conftest import make_tiny

from ladseg.engine.inputs import input_normalization
from ladseg.losses.dist import dist_loss
from ladseg.methods import build_method

IMAGENET = input_normalization("imagenet")


def test_dist_reads_the_frozen_teachers_aux_logits(batch: dict) -> None:
    teacher = make_tiny(width=24)
    method = build_method(
        "distill",
        {"kd_losses": [{"name": "dist"}]},
        make_tiny(),
        3,
        teacher=teacher,
        data_normalization=IMAGENET,
    )
    method.train()
    torch.manual_seed(0)
    out = method(batch)
    assert not teacher.training  # the teacher stays in eval mode; its aux head runs anyway
    with torch.no_grad():
        feats = teacher.backbone(batch["image"])
        t_main, t_aux = teacher.decode_head(feats).logits, teacher.aux_head(feats[-2])
        s = method.network(batch["image"])  # no dropout / BN randomness in the tiny net's output
        expected = dist_loss(s.logits, t_main) + 0.4 * dist_loss(s.aux_logits, t_aux)
        main_only = dist_loss(s.logits, t_main)
    assert out["kd_dist"].item() == pytest.approx(expected.item(), rel=1e-5)
    assert abs(out["kd_dist"].item() - main_only.item()) > 1e-4  # the aux term is really there
    off = build_method(
        "distill",
        {"kd_losses": [{"name": "dist", "aux_weight": 0.0}]},
        make_tiny(),
        3,
        teacher=make_tiny(width=24),
        data_normalization=IMAGENET,
    )
    off.load_state_dict(method.state_dict())
    off.set_teacher(teacher)
    assert off(batch)["kd_dist"].item() == pytest.approx(main_only.item(), rel=1e-5)

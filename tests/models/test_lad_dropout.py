"""LAD's DeepLabV3 uses dropout 0.01 in the ASPP projection, the head and the aux head (issue 14, item 4)."""

from __future__ import annotations

from pathlib import Path

import pytest
from torch import nn

from ladseg.engine.checkpoint import load_weights_into, save_checkpoint
from ladseg.engine.config import load_config
from ladseg.errors import CheckpointError
from ladseg.models import build_model

CONFIGS = Path(__file__).resolve().parents[2] / "configs"
LAD_DEEPLAB = sorted(
    p
    for p in CONFIGS.glob("*/lad_*deeplabv3*.yaml")
    if p.parent.name not in ("demo", "camvid")  # the demo's recipes are tuned separately
)
LAD_HEAD = {"aspp_dropout": 0.01, "dropout": 0.01, "aux_dropout": 0.01}


def _rates(model: nn.Module) -> tuple[float, float, float]:
    return (model.decode_head.aspp.dropout.p, model.decode_head.dropout.p, model.aux_head.dropout.p)


def test_head_options_reach_all_three_dropouts() -> None:
    assert _rates(build_model("deeplabv3", "resnet18", 21)) == (0.01, 0.1, 0.1)  # ladseg's defaults
    model = build_model("deeplabv3", "resnet18", 21, head=LAD_HEAD)
    assert _rates(model) == (0.01, 0.01, 0.01)
    assert model.spec["head"] == LAD_HEAD  # the checkpoint rebuilds the same network


@pytest.mark.parametrize("path", LAD_DEEPLAB, ids=lambda p: f"{p.parent.name}/{p.stem}")
def test_lad_deeplab_configs_use_lads_dropout(path: Path) -> None:
    cfg = load_config(path)
    assert cfg.model.head == LAD_HEAD
    if cfg.teacher.model is not None:  # the student's teacher section inlines the teacher config's model
        assert cfg.teacher.model.head == LAD_HEAD


def test_dropout_is_not_an_architecture_mismatch(tmp_path: Path) -> None:
    baseline = build_model("deeplabv3", "resnet18", 3, head={"channels": 16})
    save_checkpoint(tmp_path / "b.pth", {"model": baseline.state_dict(), "meta": {"spec": baseline.spec}})
    student = build_model("deeplabv3", "resnet18", 3, head={"channels": 16, **LAD_HEAD})
    load_weights_into(student, tmp_path / "b.pth")  # fine-tuning the baseline under LAD's dropout
    with pytest.raises(CheckpointError, match="head"):
        load_weights_into(build_model("deeplabv3", "resnet18", 3, head={"channels": 32}), tmp_path / "b.pth")

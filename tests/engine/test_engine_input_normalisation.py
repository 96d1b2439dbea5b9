"""The engine hands each network's declared input normalisation to the method (issue 14, bug 1)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from tiny_data import tiny_config

from ladseg.data.transforms import renormalize
from ladseg.engine.builders import build_method_from_config, build_teacher, build_trained_network
from ladseg.engine.checkpoint import save_checkpoint
from ladseg.errors import ConfigError
from ladseg.models import build_model


def _save(path: Path, normalize: str) -> Path:
    model = build_model("fcn", "resnet18", 3, head={"channels": 16})
    meta = {"spec": model.spec, "normalize": normalize, "config": None, "class_names": None}
    return save_checkpoint(path, {"model": model.state_dict(), "meta": meta})


def test_teacher_checkpoint_normalisation_reaches_the_method(tmp_path: Path, tiny_root: Path) -> None:
    ckpt = _save(tmp_path / "teacher.pth", "reference_bgr")
    cfg = tiny_config(
        tiny_root, tmp_path / "run", method={"name": "distill", "kd_losses": [{"name": "kd"}]},
        teacher={"checkpoint": str(ckpt)},
    )  # fmt: skip
    assert cfg.data.normalize == "imagenet"
    teacher = build_teacher(cfg, 3)
    method = build_method_from_config(cfg, build_trained_network(cfg, 3), 3, teacher)
    assert method.teacher_normalize == "reference_bgr"
    x = torch.randn(2, 3, 32, 32)
    batch = {"image": x, "mask": torch.zeros(2, 32, 32, dtype=torch.long)}
    torch.testing.assert_close(method.teacher_input(batch), renormalize(x, "imagenet", "reference_bgr"))


def test_init_checkpoint_of_another_normalisation_is_an_error(tmp_path: Path, tiny_root: Path) -> None:
    ckpt = _save(tmp_path / "student.pth", "reference_bgr")
    cfg = tiny_config(tiny_root, tmp_path / "run", train={"init_checkpoint": str(ckpt)})
    with pytest.raises(
        ConfigError, match=r"trained on 'reference_bgr' input but data.normalize is 'imagenet'"
    ):
        build_trained_network(cfg, 3)
    cfg.data.normalize = "reference_bgr"
    assert build_trained_network(cfg, 3).num_classes == 3  # the matching normalisation loads

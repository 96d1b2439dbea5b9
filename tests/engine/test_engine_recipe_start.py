"""Where a run starts from (issue 14, items 7 and 8): paper recipes never start silently from random
weights, and a LAD teacher can start from the trained baseline as the reference's does."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from tiny_data import tiny_config

from ladseg.engine.builders import build_teacher, build_trained_network
from ladseg.engine.checkpoint import save_checkpoint
from ladseg.errors import ConfigError
from ladseg.models import build_model

MODEL = {"name": "fcn", "backbone": "resnet18", "head": {"channels": 16}}


def _baseline(path: Path) -> torch.nn.Module:
    model = build_model("fcn", "resnet18", 3, head={"channels": 16}).eval()
    meta = {"spec": model.spec, "normalize": "imagenet", "config": None}
    save_checkpoint(path, {"model": model.state_dict(), "meta": meta})
    return model


def test_a_paper_recipe_names_the_imagenet_file_it_needs(tmp_path: Path, tiny_root: Path) -> None:
    cfg = tiny_config(tiny_root, tmp_path / "run", model={**MODEL, "pretrained": "required"})
    with pytest.raises(ConfigError, match=r"model.pretrained=path/to/resnet18_deep_stem_imagenet.pth.*=none"):
        build_trained_network(cfg, 3)
    cfg.model.pretrained = "none"  # random weights, on purpose
    assert build_trained_network(cfg, 3).num_classes == 3
    # trained weights replace the ImageNet ones: no file needed for a fine-tuned student or a teacher
    cfg.model.pretrained = "required"
    cfg.train.init_checkpoint = str(tmp_path / "b.pth")
    _baseline(tmp_path / "b.pth")
    build_trained_network(cfg, 3)
    cfg.teacher.model, cfg.teacher.checkpoint = cfg.model, str(tmp_path / "b.pth")
    build_teacher(cfg, 3)
    cfg.train.init_checkpoint = "required"
    with pytest.raises(ConfigError, match=r"train.init_checkpoint=path/to/best.pth"):
        build_trained_network(cfg, 3)


def test_lad_teacher_starts_from_the_baseline_with_zero_label_weights(
    tmp_path: Path, tiny_root: Path
) -> None:
    baseline = _baseline(tmp_path / "b.pth")
    cfg = tiny_config(
        tiny_root, tmp_path / "run", model={**MODEL, "in_channels": 4},
        train={"init_checkpoint": str(tmp_path / "b.pth")},
    )  # fmt: skip
    teacher = build_trained_network(cfg, 3).eval()
    w = teacher.backbone.first_conv.weight
    assert w.shape[1] == 4 and not w[:, 3].any()
    torch.testing.assert_close(w[:, :3], baseline.backbone.first_conv.weight)
    x = torch.randn(1, 3, 32, 32)
    with torch.no_grad():  # whatever the label channel says, the start is the baseline
        out = teacher(torch.cat([x, torch.randn(1, 1, 32, 32)], 1)).logits
        torch.testing.assert_close(out, baseline(x).logits)

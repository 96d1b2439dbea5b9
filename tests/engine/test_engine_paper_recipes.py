"""The paper configs carry the reference's recipes (issue 14, items 3, 7 and 8)."""

from __future__ import annotations

from pathlib import Path

import pytest

from ladseg.engine.builders import build_trained_network
from ladseg.engine.config import load_config
from ladseg.errors import ConfigError

CONFIGS = Path(__file__).resolve().parents[2] / "configs"
PAPER = ("voc", "cityscapes", "ade20k", "coco_stuff10k", "coco_stuff164k")


def _configs(pattern: str) -> list[Path]:
    return sorted(p for ds in PAPER for p in (CONFIGS / ds).glob(pattern))


def _id(p: Path) -> str:
    return f"{p.parent.name}/{p.stem}"


@pytest.mark.parametrize("path", _configs("*_supervised_*.yaml") + _configs("kd_*.yaml"), ids=_id)
def test_paper_runs_never_start_silently_from_random_weights(path: Path) -> None:
    cfg = load_config(path)
    assert cfg.model.pretrained == "required"
    with pytest.raises(ConfigError, match="model.pretrained=path/to/resnet18_deep_stem_imagenet.pth"):
        build_trained_network(cfg, 19)
    if path.parent.name in ("voc", "cityscapes"):  # CIRKD's train_baseline / train_kd recipe
        o = cfg.optim
        assert (o.lr, o.warmup_iters, cfg.data.batch_size, cfg.train.iters) == (0.02, 0, 16, 40000)
    if path.parent.name == "cityscapes":
        assert cfg.data.crop_size == [512, 1024] and cfg.eval.mode == "whole"  # whole 1024 x 2048 images


@pytest.mark.parametrize("path", _configs("lad_student_*.yaml") + _configs("lad_control_*.yaml"), ids=_id)
def test_fine_tuning_recipes_need_their_start(path: Path) -> None:
    cfg = load_config(path)
    assert cfg.train.init_checkpoint == "required" and cfg.optim.lr == 0.001
    with pytest.raises(ConfigError, match="train.init_checkpoint=path/to/best.pth"):
        build_trained_network(cfg, 19)


@pytest.mark.parametrize("path", _configs("lad_teacher_*.yaml"), ids=_id)
def test_teachers_say_where_they_start(path: Path) -> None:
    cfg = load_config(path)
    assert cfg.model.in_channels == 4
    if "_from_baseline_" in path.stem:  # the reference: the trained baseline, widened, at lr 0.001
        assert cfg.train.init_checkpoint == "required" and cfg.optim.lr == 0.001
    else:  # ladseg's: ImageNet weights at lr 0.01
        assert cfg.train.init_checkpoint is None and cfg.optim.lr == 0.01
        assert cfg.model.pretrained == "required"


def test_from_baseline_teachers_exist_for_voc_and_cityscapes() -> None:
    found = {(p.parent.name, p.stem.split("_r18")[0]) for p in _configs("lad_teacher_*_from_baseline_*.yaml")}
    assert found >= {
        (ds, f"lad_teacher_{m}") for ds in ("voc", "cityscapes") for m in ("deeplabv3", "pspnet")
    }

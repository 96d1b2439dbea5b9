"""Every LAD config loads, its method section parses, and teacher/student label encodings agree."""

from __future__ import annotations

from pathlib import Path

import pytest

from ladseg.data import DATASETS
from ladseg.data.embedded import EMBEDDED_CLASSES
from ladseg.engine.config import load_config
from ladseg.methods import METHODS
from ladseg.methods.label_encoding import EncoderParams, channels

CONFIGS = sorted(
    p
    for p in (Path(__file__).parents[2] / "configs").glob("*/lad_*.yaml")
    if p.stem.startswith(("lad_teacher_", "lad_student_", "lad_control_"))
)


def num_classes(dataset: str) -> int:
    """The dataset's class count, from the dataset classes themselves (the embedded one is a folder dataset)."""
    if dataset == "embedded":
        return len(EMBEDDED_CLASSES)
    return len(DATASETS.get(dataset).classes)


def test_there_are_lad_configs_for_every_dataset() -> None:
    folders = {p.parent.name for p in CONFIGS}
    assert {"voc", "cityscapes", "ade20k", "coco_stuff10k", "coco_stuff164k", "demo"} <= folders


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: f"{p.parent.name}/{p.stem}")
def test_config(path: Path) -> None:
    cfg = load_config(path)
    cls = METHODS.get(cfg.method_name)
    params = cls.parse_params(cfg.method_params)
    if cfg.method_name == "lad_teacher":
        enc = params.encoder
        assert isinstance(enc, EncoderParams)
        assert cfg.model.in_channels == 3 + channels(enc.kind, num_classes(cfg.data.dataset))
    elif cfg.method_name == "distill":
        assert cfg.model.in_channels == 3
        teacher_cfg = load_config(path.parent / cfg.teacher.config)
        t_channels = channels(teacher_cfg.method.encoder.kind, num_classes(cfg.data.dataset))
        assert cfg.teacher.model is not None and cfg.teacher.model.in_channels == 3 + t_channels
        assert teacher_cfg.method_name == "lad_teacher"
        assert teacher_cfg.model.name == cfg.model.name and teacher_cfg.data.dataset == cfg.data.dataset
        t_enc, s_enc = teacher_cfg.method.encoder, params.teacher_label
        assert (t_enc.kind, t_enc.scale) == (s_enc.kind, s_enc.scale)
        assert s_enc.noise == 0.02 and params.aux_weight == 0.02
        if path.parent.name not in (
            "demo",
            "camvid",
        ):  # their demo recipes set the fine-tuning lr (tested there)
            assert cfg.optim.lr == 0.001  # the reference fine-tunes the baseline
    else:
        assert cfg.method_name == "supervised" and cfg.optim.lr == 0.001  # the fine-tuning control

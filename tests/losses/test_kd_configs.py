"""The baseline configs load, inherit the supervised recipe, and name buildable losses."""

from __future__ import annotations

from pathlib import Path

import pytest

from ladseg.engine.config import load_config
from ladseg.losses import build_loss
from ladseg.methods.distill import Distill

CONFIGS = sorted((Path(__file__).parents[2] / "configs").glob("*/kd_*.yaml"))


def test_every_method_has_a_voc_and_a_cityscapes_config() -> None:
    names = {(p.parent.name, p.name.split("_deeplabv3")[0]) for p in CONFIGS}
    methods = {m for _, m in names}
    assert methods >= {"kd_at", "kd_fitnets", "kd_cwd", "kd_dist", "kd_skd", "kd_ifvd", "kd_cirkd"}
    assert all((ds, m) in names for ds in ("voc", "cityscapes") for m in methods)


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: f"{p.parent.name}/{p.stem}")
def test_config_loads_and_builds_its_losses(path: Path) -> None:
    cfg = load_config(path)
    assert cfg.method_name == "distill"
    assert (cfg.model.name, cfg.model.backbone) == ("deeplabv3", "resnet18")
    assert cfg.teacher.model is not None and cfg.teacher.model.backbone == "resnet101"
    assert cfg.teacher.model.in_channels == 3
    params = Distill.parse_params(cfg.method)
    assert params.kd_losses
    for spec in params.kd_losses:
        kwargs = spec.options()
        if spec.name.startswith("cirkd"):  # keep the CPU test small; sizes are not what is checked
            kwargs.update(pixel_memory_size=8, region_memory_size=4)
        build_loss(spec.name, 128, 256, 19, **kwargs)  # the R18 / R101 DeepLabV3 feature widths

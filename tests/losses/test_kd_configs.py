"""The baseline configs load, inherit the supervised recipe, and name buildable losses."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from ladseg.engine.config import load_config
from ladseg.losses import LOSSES, build_loss
from ladseg.methods.distill import Distill

ROOT = Path(__file__).parents[2] / "configs"
#: the DeepLabV3-R101 -> R18 configs (the CamVid benchmark's are checked in tests/bench)
CONFIGS = sorted(p for ds in ("voc", "cityscapes") for p in (ROOT / ds).glob("kd_*.yaml"))
#: the R18 / R101 DeepLabV3 widths: decoder features, backbone's last stage
WIDTHS = {"decoder": (128, 256), "backbone": (512, 2048)}
CLASSICS = {"kd_at", "kd_fitnets", "kd_cwd", "kd_dist", "kd_skd", "kd_ifvd", "kd_cirkd"}


def test_every_method_has_a_cityscapes_config_and_the_classics_a_voc_one() -> None:
    names = {(p.parent.name, p.name.split("_deeplabv3")[0]) for p in CONFIGS}
    methods = {m for _, m in names}
    assert methods >= CLASSICS | {"kd_af_dcd", "kd_maskd"}
    assert all(("cityscapes", m) in names for m in methods)
    assert all(("voc", m) in names for m in CLASSICS)


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: f"{p.parent.name}/{p.stem}")
def test_config_loads_and_builds_its_losses(path: Path, tmp_path: Path) -> None:
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
        if spec.name == "maskd":  # the config leaves the token stage's file to the run
            assert kwargs["tokens"] is None
            torch.save({"mask_token": torch.randn(8, 19)}, tmp_path / "tokens.pth")
            kwargs["tokens"] = str(tmp_path / "tokens.pth")
        widths = WIDTHS[LOSSES.get(spec.name).feature_level]
        with torch.device(
            "meta"
        ):  # shapes only: Af-DCD's 2048-wide projector would take seconds to initialise
            build_loss(spec.name, *widths, 19, **kwargs)

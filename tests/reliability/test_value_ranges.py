"""Values have their ranges: loss weights are finite and >= 0, scales leave pixels, images have some."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from reliability_helpers import cli_error, save_model_checkpoint, write_config

import ladseg
from ladseg.errors import LadsegError


@pytest.mark.parametrize(
    "overrides, key, value",
    [
        (["method.name=lad_teacher", "method.consistency_weight=-3"], "method.consistency_weight", "-3.0"),
        (["method.aux_weight=-1"], "method.aux_weight", "-1.0"),
        (["method.aux_weight=.nan"], "method.aux_weight", "nan"),
        (["method.name=distill", "method.kd_losses=[{name: cwd, weight: -2}]"], "method.kd_losses[0].weight", "-2.0"),
        (["method.name=distill", "method.kd_losses=[{name: kd, weight: .inf}]"], "method.kd_losses[0].weight", "inf"),
        (["method.name=distill", "method.kd_losses=[{name: cirkd, pixel_weight: -0.1}]"],
         "method.kd_losses[0].pixel_weight", "-0.1"),
    ],
)  # fmt: skip
def test_a_negative_or_non_finite_loss_weight_is_refused_by_key(
    overrides: list[str], key: str, value: str, tmp_path: Path, capsys
) -> None:
    cfg = write_config(tmp_path / "c.yaml", tmp_path / "no-data", tmp_path / "run")
    message = cli_error(["train", str(cfg), *overrides], capsys)
    assert message == f"config key {key!r}: a loss weight must be a finite number >= 0, got {value}", message
    assert not (tmp_path / "run").exists()


def test_a_zero_loss_weight_is_allowed(tmp_path: Path) -> None:
    from ladseg.engine.config import config_from_dict

    cfg = config_from_dict({"method": {"name": "lad_teacher", "consistency_weight": 0, "aux_weight": 0}})
    assert (cfg.method.consistency_weight, cfg.method.aux_weight) == (0.0, 0.0)


def test_a_tiny_scale_is_refused_before_any_image(tmp_path: Path, capsys) -> None:
    ckpt = save_model_checkpoint(tmp_path / "m.pth")
    image = tmp_path / "x.png"
    Image.fromarray(np.zeros((40, 40, 3), dtype=np.uint8)).save(image)
    message = cli_error(["predict", "--checkpoint", str(ckpt), "--input", str(image), "--output",
                         str(tmp_path / "out"), "--mode", "multiscale", "--scales", "0.001", "1.0"], capsys)  # fmt: skip
    assert message.startswith(
        "--scales: expected one or more numbers >= 0.1, got 0.001 1 (common: 0.5 0.75"
    ), message
    assert not (tmp_path / "out").exists()
    with pytest.raises(
        LadsegError, match=r"--scales: expected one or more numbers >= 0.1, got 0.001 \(common"
    ):
        ladseg.load(ckpt, "cpu", mode="multiscale", scales=[0.001])


@pytest.mark.parametrize("kind", ["array", "pil"])
def test_a_zero_by_zero_image_is_refused_through_the_api(kind: str, tmp_path: Path) -> None:
    segmenter = ladseg.load(save_model_checkpoint(tmp_path / "m.pth"), "cpu")
    empty = np.zeros((0, 0, 3), dtype=np.uint8)
    image = empty if kind == "array" else Image.new("RGB", (0, 0))
    with pytest.raises(LadsegError, match=r"the image is empty \(0 x 0 pixels\): nothing to segment"):
        segmenter.predict(image)

"""Each network reads the input its own checkpoint declares (issue 14, bug 1).

A reference teacher (BGR 0-255 minus the mean, label codes x 100) distilling into an
ImageNet-normalised student must get the batch converted, and its label channel at its own scale.
"""

from __future__ import annotations

import re

import numpy as np
import pytest
import torch
from conftest import make_tiny, toy_batch

from ladseg.data.transforms import NORMALIZATIONS, Normalize
from ladseg.engine.inputs import input_normalization, label_scales
from ladseg.errors import ConfigError
from ladseg.methods import build_method
from ladseg.methods.label_encoding import declared_encoding, fixed_codes


def _pixels_batch(seed: int = 0) -> tuple[np.ndarray, dict[str, torch.Tensor]]:
    rng = np.random.default_rng(seed)
    rgb = rng.integers(0, 256, (2, 16, 16, 3), dtype=np.uint8)
    mask = toy_batch(2, 16)["mask"]
    image = torch.stack(
        [Normalize("imagenet")({"image": torch.from_numpy(r).permute(2, 0, 1)})["image"] for r in rgb]
    )
    return rgb, {"image": image, "mask": mask}


def _teacher(meta: dict | None, in_channels: int = 4):  # noqa: ANN202
    teacher = make_tiny(in_channels=in_channels, width=24)
    if meta is not None:
        teacher.meta = meta
    return teacher


def test_reference_teacher_gets_reference_input_and_label_scale() -> None:
    rgb, batch = _pixels_batch()
    teacher = _teacher({"normalize": "reference_bgr", "config": None})
    method = build_method(
        "distill", {}, make_tiny(), 3, teacher=teacher, data_normalization=input_normalization("imagenet")
    )
    x = method.teacher_input(batch)
    expected = torch.stack(
        [Normalize("reference_bgr")({"image": torch.from_numpy(r).permute(2, 0, 1)})["image"] for r in rgb]
    )
    torch.testing.assert_close(x[:, :3], expected, atol=2e-3, rtol=0)  # BGR 0-255 minus the mean
    assert x[:, :3].abs().max() > 50  # the reference's range, not ImageNet units
    codes = fixed_codes(3)[torch.where(batch["mask"] == 255, 3, batch["mask"])]
    assert method.teacher_encoder.scale == pytest.approx(100.0)  # the reference's x100
    assert (x[:, 3] / 100.0 - codes).std().item() == pytest.approx(0.02, rel=0.25)
    # the student still reads the batch as it is
    out = method(batch)
    assert torch.isfinite(out["loss"])


def test_same_normalisation_is_left_alone() -> None:
    _, batch = _pixels_batch()
    teacher = _teacher({"normalize": "imagenet", "config": None}, in_channels=3)
    method = build_method(
        "distill", {}, make_tiny(), 3, teacher=teacher, data_normalization=input_normalization("imagenet")
    )
    assert method.teacher_normalize is None and torch.equal(method.teacher_input(batch), batch["image"])
    # an ordinary (3-channel) reference teacher is converted too
    ref = build_method(
        "distill",
        {},
        make_tiny(),
        3,
        teacher=_teacher({"normalize": "reference_bgr"}, 3),
        data_normalization=input_normalization("imagenet"),
    )
    assert ref.teacher_normalize == "reference_bgr"
    assert not torch.allclose(ref.teacher_input(batch), batch["image"])


def _ladseg_teacher_meta(scale: object, normalize: str = "imagenet") -> dict:
    return {
        "normalize": normalize,
        "config": {"method": {"name": "lad_teacher", "encoder": {"kind": "random_codes", "scale": scale}}},
    }


def test_label_scale_follows_the_teacher_checkpoint(capsys: pytest.CaptureFixture[str]) -> None:
    assert declared_encoding(_ladseg_teacher_meta(1.0), label_scales()) == {
        "kind": "random_codes",
        "scale": 1.0,
    }
    auto = declared_encoding(_ladseg_teacher_meta("auto", "reference_bgr"), label_scales())
    assert auto is not None and auto["scale"] == pytest.approx(100.0)
    assert declared_encoding({"normalize": "imagenet", "config": {"method": {"name": "supervised"}}}) is None
    assert declared_encoding(None) is None

    # scale: auto (the default) takes the teacher's own scale
    method = build_method(
        "distill",
        {},
        make_tiny(),
        3,
        teacher=_teacher(_ladseg_teacher_meta(1.0)),
        data_normalization=input_normalization("imagenet"),
    )
    assert method.teacher_encoder.scale == 1.0
    # an explicit scale that differs from the teacher's: the checkpoint's is used, and the user is told
    method = build_method(
        "distill", {"teacher_label": {"scale": "imagenet"}}, make_tiny(), 3,
        teacher=_teacher(_ladseg_teacher_meta(1.0)), data_normalization=input_normalization("imagenet"),
    )  # fmt: skip
    assert method.teacher_encoder.scale == 1.0
    assert re.search(
        r"teacher_label.scale='imagenet' \(1.7\d*\).*label scale 1: using 1", capsys.readouterr().out
    )
    with pytest.raises(ConfigError, match="trained with 'random_codes' labels"):
        build_method(
            "distill", {"teacher_label": {"kind": "onehot"}}, make_tiny(), 3,
            teacher=_teacher(_ladseg_teacher_meta(1.0), in_channels=7), data_normalization=input_normalization("imagenet"),
        )  # fmt: skip


def test_lad_teacher_auto_scale_follows_the_data_normalisation() -> None:
    teacher = make_tiny(in_channels=4)
    params = {"encoder": {"scale": "auto"}}
    for name in ("imagenet", "reference_bgr"):
        method = build_method("lad_teacher", params, teacher, 3, data_normalization=input_normalization(name))
        assert method.encoder.scale == pytest.approx(NORMALIZATIONS[name].label_scale)

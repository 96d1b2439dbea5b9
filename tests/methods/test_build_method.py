"""build_method: registry, parameter checking, teacher/student compatibility; real models plug in."""

from __future__ import annotations

import pytest
import torch
from conftest import make_tiny, toy_batch

from ladseg.engine.inputs import input_normalization
from ladseg.errors import ConfigError
from ladseg.methods import METHODS, build_method

IMAGENET = input_normalization("imagenet")


def test_registry_has_the_lad_methods() -> None:
    assert {"supervised", "lad_teacher", "distill"} <= set(METHODS.names())
    assert METHODS.get("distill").needs_teacher and not METHODS.get("lad_teacher").needs_teacher


def test_errors() -> None:
    with pytest.raises(ConfigError, match="valid names"):
        build_method("ladd", {}, make_tiny(), 3, data_normalization=IMAGENET)
    with pytest.raises(ConfigError, match="needs a teacher"):
        build_method("distill", {}, make_tiny(), 3, data_normalization=IMAGENET)
    with pytest.raises(ConfigError, match="teacher 5, student 3"):
        build_method(
            "distill",
            {},
            make_tiny(),
            3,
            teacher=make_tiny(in_channels=4, num_classes=5),
            data_normalization=IMAGENET,
        )
    with pytest.raises(ConfigError, match="tua"):
        build_method("lad_teacher", {"tua": 2.0}, make_tiny(in_channels=4), 3, data_normalization=IMAGENET)
    with pytest.raises(ConfigError, match="predicts 3 classes"):
        build_method("supervised", {}, make_tiny(), 4, data_normalization=IMAGENET)
    method = build_method(
        "lad_teacher",
        {"name": "lad_teacher", "tau": 2.0},
        make_tiny(in_channels=4),
        3,
        data_normalization=IMAGENET,
    )
    assert method.params.tau == 2.0


def test_real_models_pspnet_teacher_to_deeplabv3_student() -> None:
    """A 4-channel PSPNet-R18 LAD teacher teaches a DeepLabV3-R18 student (different decoders and widths)."""
    from ladseg import models

    teacher = models.build_model("pspnet", "resnet18", 3, in_channels=4)
    lad = build_method("lad_teacher", {}, teacher, 3, data_normalization=IMAGENET)
    batch = toy_batch(n=2, size=32)
    lad(batch)["loss"].backward()
    assert lad.eval_model()(lad.inference_input(batch)).logits.shape[1] == 3
    student = models.build_model("deeplabv3", "resnet18", 3)
    kd = [{"name": "cwd"}, {"name": "cwd_feature", "normalize_by": "teacher", "weight": 1.0}]
    method = build_method(
        "distill", {"kd_losses": kd}, student, 3, teacher=teacher, data_normalization=IMAGENET
    )
    out = method(batch)
    out["loss"].backward()
    assert torch.isfinite(out["loss"]) and teacher.training is False


def test_an_image_only_method_declares_it_reads_no_label() -> None:
    """The label contract is declared on Method: the trainer and evaluator read ``label_input``."""
    from ladseg import models

    method = build_method("supervised", {}, models.build_model("fcn", "resnet18", 3, head={"channels": 8}), 3)
    assert type(method).label_input is False and METHODS.get("lad_teacher").label_input is True
    with pytest.raises(ConfigError, match="reads no label"):
        method.inference_input_without_label(toy_batch(n=1, size=16))

"""One InferenceSettings object from the config, the command line and the API to the evaluator."""

from __future__ import annotations

import dataclasses
import inspect

import pytest
import torch
from torch import nn

import ladseg
from ladseg.cli import build_parser
from ladseg.engine import evaluation
from ladseg.engine.config import EvalConfig, config_from_dict, inference_settings
from ladseg.engine.inference import INFERENCE_MODES
from ladseg.engine.inference_settings import (
    DEFAULT_SCALES,
    MODES,
    MULTISCALE_AVERAGES,
    MULTISCALE_ROUNDINGS,
    SCALE_MODES,
    InferenceSettings,
    OptionStyle,
)
from ladseg.errors import ConfigError
from ladseg.models.segmentor import SegOutput

SETTING_NAMES = [f.name for f in dataclasses.fields(InferenceSettings)]


def test_the_config_section_is_the_settings_plus_its_batch_size() -> None:
    """Same fields, same defaults: the config and the API cannot drift apart again."""
    assert issubclass(EvalConfig, InferenceSettings)
    extra = {f.name for f in dataclasses.fields(EvalConfig)} - set(SETTING_NAMES)
    assert extra == {"batch_size"}
    assert InferenceSettings().scales == EvalConfig().scales == list(DEFAULT_SCALES)


def test_every_registered_inference_mode_is_a_choice_and_back() -> None:
    assert set(INFERENCE_MODES.names()) == set(MODES)
    assert set(SCALE_MODES) < set(MODES)


def test_the_command_line_offers_every_setting_with_the_same_choices() -> None:
    """Adding a setting without its flag (or API keyword) fails here, naming what is missing."""
    for command in ("eval", "predict"):
        sub = build_parser()._subparsers._group_actions[0].choices[command]  # type: ignore[union-attr]
        actions = {a.dest: a for a in sub._actions}
        assert set(SETTING_NAMES) <= set(actions), f"{command} lacks {set(SETTING_NAMES) - set(actions)}"
        for name, allowed in (
            ("mode", MODES), ("scale_mode", SCALE_MODES),
            ("average", MULTISCALE_AVERAGES), ("rounding", MULTISCALE_ROUNDINGS),
        ):  # fmt: skip
            assert tuple(actions[name].choices) == allowed
    for function in (ladseg.load, ladseg.evaluate):
        parameters = inspect.signature(function).parameters
        assert set(SETTING_NAMES) <= set(parameters), f"{function.__name__} lacks a keyword"
        assert "settings" in parameters


def test_a_config_reaches_the_evaluator_as_one_object(monkeypatch) -> None:
    cfg = config_from_dict(
        {
            "data": {"crop_size": [24, 32]},
            "eval": {"mode": "multiscale", "scales": [0.5, 1], "scale_mode": "slide", "stride": [8, 8]},
        }
    )
    settings = inference_settings(cfg)
    assert type(settings) is InferenceSettings  # the batch size stays with the config
    assert settings.crop_size == [24, 32]  # the window defaults to the training crop
    assert cfg.eval.crop_size is None  # and the config is not changed
    assert settings.kwargs() == {
        "crop_size": [24, 32], "stride": [8, 8], "scales": [0.5, 1.0], "flip": False,
        "scale_mode": "slide", "average": "probs", "rounding": "round",
    }  # fmt: skip


def test_one_check_names_a_config_key_or_a_flag() -> None:
    bad = InferenceSettings(mode="slide", crop_size=[16, 16], stride=[20, 8])
    with pytest.raises(
        ConfigError, match=r"^config key 'eval.stride': \[20, 8\] is larger than the sliding window"
    ):
        bad.check(OptionStyle("eval"))
    with pytest.raises(ConfigError, match=r"^--stride 20 8 is larger than the sliding window 16 16"):
        bad.check()
    with pytest.raises(ConfigError, match=r"^config key 'eval.average': expected one of probs, logits"):
        config_from_dict({"eval": {"average": "mean"}})
    with pytest.raises(ConfigError, match=r"^--scale-mode: expected one of whole, slide, got 'multiscale'"):
        InferenceSettings(scale_mode="multiscale").kwargs()


def test_options_given_override_and_flip_adds() -> None:
    base = InferenceSettings(mode="multiscale", scales=[1.0], flip=True)
    changed = base.updated(mode="slide", scales=None, flip=False, crop_size=(8, 8))
    assert (changed.mode, changed.scales, changed.flip, changed.crop_size) == ("slide", [1.0], True, [8, 8])
    assert base.mode == "multiscale"  # a copy


class _Oracle(nn.Module):
    def forward(self, x: torch.Tensor) -> SegOutput:
        return SegOutput(x[:, :3] * 10, x)


def test_the_evaluator_runs_the_settings_it_is_given(monkeypatch) -> None:
    seen = []
    original = evaluation.infer

    def spy(model, x, mode, **kwargs):
        seen.append((mode, kwargs))
        return original(model, x, mode, **kwargs)

    monkeypatch.setattr(evaluation, "infer", spy)
    mask = torch.randint(0, 3, (1, 8, 8))
    loader = [{"image": torch.nn.functional.one_hot(mask, 3).permute(0, 3, 1, 2).float(), "mask": mask}]
    settings = InferenceSettings(mode="slide", crop_size=[4, 4], stride=[2, 2])
    metrics = evaluation.evaluate(_Oracle(), loader, 3, settings, progress=False)
    assert metrics.summary()["mIoU"] == 100.0
    assert seen == [("slide", {"crop_size": [4, 4], "stride": [2, 2]})]

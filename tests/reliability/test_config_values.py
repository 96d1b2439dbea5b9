"""Values out of their range and wrong types in the method section: one line naming the key,
before any data is read (the data root of these configs does not exist)."""

from __future__ import annotations

from pathlib import Path

import pytest
from reliability_helpers import cli_error, save_model_checkpoint, write_config

from ladseg.engine.config import config_from_dict


@pytest.mark.parametrize(
    "override, expected",
    [
        (
            "data.crop_size=[0,0]",
            "config key 'data.crop_size': expected two positive integers [h, w], got [0, 0]",
        ),
        ("eval.crop_size=[0,16]", "config key 'eval.crop_size': expected two positive integers"),
        ("eval.stride=[0,0]", "config key 'eval.stride': expected two positive integers [h, w], got [0, 0]"),
        (
            "eval.stride=[48,48]",
            "config key 'eval.stride': [48, 48] is larger than the sliding window [32, 32]",
        ),
        ("optim.lr=-0.01", "config key 'optim.lr': expected a number > 0, got -0.01"),
        ("optim.weight_decay=-1e-4", "config key 'optim.weight_decay': expected a number >= 0, got -0.0001"),
        ("optim.momentum=1.5", "config key 'optim.momentum': expected a number in [0, 1), got 1.5"),
        ("optim.warmup_ratio=2", "config key 'optim.warmup_ratio': expected a number in [0, 1], got 2.0"),
        ("optim.lr=.nan", "config key 'optim.lr': expected a number > 0, got nan"),
        ("data.num_workers=-1", "config key 'data.num_workers': expected an integer >= 0, got -1"),
        (
            "data.scale_range=[2.0,0.5]",
            "config key 'data.scale_range': expected 0 < lo <= hi, got [2.0, 0.5]",
        ),
        ("eval.scales=[]", "config key 'eval.scales': expected one or more numbers >= 0.1, got []"),
        ("eval.scales=[1.0,0.001]", "config key 'eval.scales': expected one or more numbers >= 0.1"),
        ("model.num_classes=0", "config key 'model.num_classes': expected an integer >= 1 or null, got 0"),
    ],
)
def test_values_out_of_range_name_the_key(override: str, expected: str, tmp_path: Path, capsys) -> None:
    cfg = write_config(tmp_path / "c.yaml", tmp_path / "no-data", tmp_path / "run")
    assert expected in cli_error(["train", str(cfg), override], capsys)
    assert not (tmp_path / "run").exists()


def test_eval_options_are_checked_with_the_config(tmp_path: Path, capsys) -> None:
    """``--stride`` larger than the config's window: refused before the checkpoint is even read."""
    cfg = write_config(tmp_path / "c.yaml", tmp_path / "no-data", tmp_path / "run")
    ckpt = save_model_checkpoint(tmp_path / "m.pth")
    message = cli_error(["eval", str(cfg), "--checkpoint", str(ckpt), "--mode", "slide", "--stride", "40", "8"],
                        capsys)  # fmt: skip
    assert "config key 'eval.stride': [40, 8] is larger than the sliding window [32, 32]" in message


@pytest.mark.parametrize(
    "overrides, expected",
    [
        (["method.name=lad_teacher", "method.consistency_weight=five"],
         "config key 'method.consistency_weight': expected float, got 'five' (str)"),
        (["method.aux_weight=heavy"], "config key 'method.aux_weight': expected float, got 'heavy' (str)"),
        (["method.name=lad_teacher", "method.encoder.noise=lots"],
         "config key 'method.encoder.noise': expected float, got 'lots' (str)"),
        (["method.name=lad_teacher", "method.encoder.corruption.flip_prob=[1]"],
         "config key 'method.encoder.corruption.flip_prob': expected float, got [1] (list)"),
        (["method.name=lad_teacher", "method.two_path_batch=sometimes"],
         "config key 'method.two_path_batch': expected bool, got 'sometimes' (str)"),
        (["method.name=distill", "method.teacher_label.kind=[onehot]"],
         "config key 'method.teacher_label.kind': expected str, got ['onehot'] (list)"),
        (["method.name=distill", "method.kd_losses=[{name: cwd, tau: warm}]"],
         "config key 'method.kd_losses[0].tau': expected float, got 'warm' (str)"),
        (["method.name=distill", "method.kd_losses=[{name: kd, weight: heavy}]"],
         "config key 'method.kd_losses[0].weight': expected float, got 'heavy' (str)"),
        (["method.name=distill", "method.kd_losses=[{name: cwdd}]"], "config key 'method.kd_losses[0].name': "),
        (["method.tua=2"], "unknown config key method.tua; valid keys of method: aux_weight"),
        (["method.name=ladd"], "config key 'method.name': unknown method 'ladd'"),
    ],
)  # fmt: skip
def test_a_wrong_method_value_names_its_key_before_any_data_is_read(
    overrides: list[str], expected: str, tmp_path: Path, capsys
) -> None:
    cfg = write_config(tmp_path / "c.yaml", tmp_path / "no-data", tmp_path / "run")
    message = cli_error(["train", str(cfg), *overrides], capsys)
    assert message.startswith(expected), message
    assert not (tmp_path / "run").exists()


def test_method_values_are_converted_like_the_rest_of_the_config() -> None:
    cfg = config_from_dict({"method": {"name": "lad_teacher", "consistency_weight": "3e-3", "tau": 2,
                                       "encoder": {"noise": 0, "scale": "imagenet"}}})  # fmt: skip
    m = cfg.method  # typed when the config is read
    assert (m.name, m.consistency_weight, m.tau, m.encoder.noise, m.encoder.scale) == (
        "lad_teacher", 0.003, 2.0, 0.0, "imagenet")  # fmt: skip
    assert isinstance(m.tau, float)


def test_eval_checks_the_method_section_before_reading_the_checkpoint(tmp_path: Path, capsys) -> None:
    """A LAD teacher is evaluated through its method: ``method.eval_noise: loud`` is named first."""
    cfg = write_config(tmp_path / "c.yaml", tmp_path / "no-data", tmp_path / "run")
    message = cli_error(["eval", str(cfg), "method.name=lad_teacher", "method.eval_noise=loud",
                         "--checkpoint", str(tmp_path / "missing.pth")], capsys)  # fmt: skip
    assert message == "config key 'method.eval_noise': expected float, got 'loud' (str)"

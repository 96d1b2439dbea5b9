"""The reference's padding and multi-scale options reach the code that uses them from a config or the CLI.

``data.pad`` (mean colour, as the reference, or black) and ``eval.average`` / ``eval.rounding`` (the
reference's multi-scale evaluation averages logits over floored sizes) existed as function options;
these tests check the config keys, their one-line errors and that training, ``ladseg eval`` and the
Python API pass them on.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch
from tiny_data import tiny_config

import ladseg.engine.evaluation as evaluation
from ladseg.cli import main as cli_main
from ladseg.data.transforms import get_normalization
from ladseg.engine.builders import build_split
from ladseg.engine.config import config_from_dict
from ladseg.engine.trainer import train
from ladseg.errors import ConfigError


@pytest.mark.parametrize("pad", ["mean", "black"])
def test_data_pad_pads_training_crops_as_configured(tiny_root: Path, tmp_path: Path, pad: str) -> None:
    # 32 x 32 images, 48 x 48 crops at scale 1: the bottom/right 16 rows/columns are padding.
    cfg = tiny_config(
        tiny_root,
        tmp_path / "run",
        data={"crop_size": [48, 48], "scale_range": [1.0, 1.0], "flip": False, "pad": pad},
    )
    sample = build_split(cfg, "train", train=True)[0]
    image, mask = sample["image"], sample["mask"]
    assert image.shape[-2:] == (48, 48)
    padded = image[:, 32:, :]
    assert (mask[32:, :] == 255).all()  # the label is padded with ignore either way
    if pad == "mean":  # the mean colour: exactly 0 after normalisation
        assert torch.count_nonzero(padded) == 0
    else:  # black before normalising: (0 - mean) / std per channel
        norm = get_normalization(cfg.data.normalize)
        expected = torch.tensor([-m / s for m, s in zip(norm.mean, norm.std, strict=True)])
        torch.testing.assert_close(padded.mean(dim=(1, 2)), expected.float(), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize(
    ("section", "key", "value"),
    [("data", "pad", "grey"), ("eval", "average", "median"), ("eval", "rounding", "ceil")],
)
def test_reference_option_typos_are_one_line_errors(
    tmp_path: Path, section: str, key: str, value: str
) -> None:
    with pytest.raises(ConfigError, match=rf"'{section}\.{key}'"):
        config_from_dict({"data": {"dataset": "folder", "root": str(tmp_path)}, section: {key: value}})


@pytest.fixture
def record_infer(monkeypatch: pytest.MonkeyPatch) -> list[dict[str, Any]]:
    """Every ``infer`` call the evaluation makes, with its keyword arguments."""
    calls: list[dict[str, Any]] = []
    original = evaluation.infer

    def recording(model: Any, x: torch.Tensor, mode: str = "whole", **kwargs: Any) -> torch.Tensor:
        calls.append({"mode": mode, **kwargs})
        return original(model, x, mode, **kwargs)

    monkeypatch.setattr(evaluation, "infer", recording)
    return calls


def test_reference_multiscale_options_reach_validation_eval_and_api(
    tiny_root: Path, tmp_path: Path, record_infer: list[dict[str, Any]]
) -> None:
    reference = {"mode": "multiscale", "scales": [0.75, 1.0], "average": "logits", "rounding": "floor"}
    cfg = tiny_config(tiny_root, tmp_path / "run", train={"iters": 2, "val_interval": 2}, eval=reference)
    train(cfg)
    assert record_infer and all(c["average"] == "logits" and c["rounding"] == "floor" for c in record_infer)

    record_infer.clear()  # the CLI's flags replace a plain config's evaluation (whole image, defaults)
    plain = tmp_path / "plain.yaml"
    saved = (tmp_path / "run" / "config.yaml").read_text()
    for reference_value, default in (("mode: multiscale", "mode: whole"), ("average: logits", "average: probs"),
                                     ("rounding: floor", "rounding: round")):  # fmt: skip
        assert saved.count(reference_value) == 1, reference_value
        saved = saved.replace(reference_value, default)
    plain.write_text(saved)
    checkpoint = str(tmp_path / "run" / "last.pth")
    rc = cli_main(
        ["eval", str(plain), "--checkpoint", checkpoint, "--mode", "multiscale", "--scales", "0.5", "1.0",
         "--average", "logits", "--rounding", "floor"]
    )  # fmt: skip
    assert rc == 0
    assert record_infer and {(c["mode"], c["average"], c["rounding"]) for c in record_infer} == {
        ("multiscale", "logits", "floor")
    }

    import ladseg

    record_infer.clear()
    ladseg.evaluate(checkpoint, str(plain), mode="multiscale", scales=[1.0], average="logits")
    assert {(c["average"], c["rounding"]) for c in record_infer} == {("logits", "round")}

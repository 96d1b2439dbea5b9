"""Cases like those of issue 15 that nobody listed: each one line (or handled), never a traceback."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from reliability_helpers import cli_error, save_model_checkpoint, write_config

from ladseg.cli import main


@pytest.mark.parametrize(
    "device, expected",
    [
        ("foo", "run.device='foo' is not a device; use auto, cpu, cuda or cuda:N"),
        ("cuda:99", "run.device='cuda:99' but "),
    ],
)
def test_a_device_that_does_not_exist(device: str, expected: str, tmp_path: Path, capsys) -> None:
    Image.fromarray(np.zeros((8, 8, 3), dtype=np.uint8)).save(tmp_path / "a.png")
    ckpt = save_model_checkpoint(tmp_path / "m.pth")
    message = cli_error(["predict", "--checkpoint", str(ckpt), "--input", str(tmp_path / "a.png"), "--output",
                         str(tmp_path / "out"), "--device", device], capsys)  # fmt: skip
    assert message.startswith(expected)


def test_a_config_that_is_not_text(tmp_path: Path, capsys) -> None:
    (tmp_path / "c.yaml").write_bytes(b"\xff\xfe\x00\x01binary")
    message = cli_error(["train", str(tmp_path / "c.yaml")], capsys)
    assert message.startswith(f"{tmp_path / 'c.yaml'}: not a text file (UTF-8 expected")


@pytest.mark.parametrize(
    "override, key",
    [("data.resize_ratio=.inf", "data.resize_ratio"), ("data.scale_range=[0.5,.inf]", "data.scale_range")],
)
def test_infinite_sizes_are_refused(override: str, key: str, tmp_path: Path, capsys) -> None:
    cfg = write_config(tmp_path / "c.yaml", tmp_path / "no-data", tmp_path / "run")
    assert cli_error(["train", str(cfg), override], capsys).startswith(f"config key '{key}': expected")


def test_json_over_an_input_of_the_command_is_refused(tiny_root: Path, tmp_path: Path, capsys) -> None:
    cfg = write_config(tmp_path / "c.yaml", tiny_root, tmp_path / "run")
    ckpt = save_model_checkpoint(tmp_path / "m.pth")
    before = ckpt.read_bytes()
    message = cli_error(["eval", str(cfg), "--checkpoint", str(ckpt), "--json", str(ckpt)], capsys)
    assert message == f"--json {ckpt} would overwrite {ckpt}, an input of this command"
    assert ckpt.read_bytes() == before
    message = cli_error(["check-data", str(cfg), "--json", str(cfg)], capsys)
    assert message == f"--json {cfg} would overwrite {cfg}, an input of this command"


def test_predict_reads_every_common_format_in_a_folder(tmp_path: Path, capsys) -> None:
    images = tmp_path / "in"
    images.mkdir()
    pixels = np.zeros((8, 8, 3), dtype=np.uint8)
    for name in ("a.tif", "b.webp", "c.gif", "d.bmp"):
        Image.fromarray(pixels).save(images / name)
    Image.fromarray(np.zeros((8, 8, 4), dtype=np.uint8)).save(images / "e.png")  # RGBA
    ckpt = save_model_checkpoint(tmp_path / "m.pth")
    assert (
        main(["predict", "--checkpoint", str(ckpt), "--input", str(images), "--output", str(tmp_path / "o")])
        == 0
    )
    assert "wrote 5 masks" in capsys.readouterr().out

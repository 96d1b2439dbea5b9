"""``ladseg predict`` never overwrites an earlier run's outputs in the same folder (unless --overwrite)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image
from reliability_helpers import cli_error, save_model_checkpoint

from ladseg.cli import main


def picture(path: Path, value: int) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.full((24, 24, 3), value, dtype=np.uint8)).save(path)
    return path


def test_a_second_run_into_the_same_folder_is_refused(tmp_path: Path, capsys) -> None:
    ckpt = save_model_checkpoint(tmp_path / "m.pth")
    out = tmp_path / "out"
    picture(tmp_path / "day1" / "street.png", 30)
    picture(tmp_path / "day2" / "street.png", 200)  # other pictures, the same names
    picture(tmp_path / "day2" / "park.png", 120)
    assert (
        main(["predict", "--checkpoint", str(ckpt), "--input", str(tmp_path / "day1"), "--output", str(out)])
        == 0
    )
    capsys.readouterr()
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    message = cli_error(["predict", "--checkpoint", str(ckpt), "--input", str(tmp_path / "day2"),
                         "--output", str(out)], capsys)  # fmt: skip
    assert message.startswith(
        f"--output {out} already holds street.png and 1 more of this run's output names"
    ), message
    assert "--overwrite" in message
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before  # nothing written, park.png included


def test_overwrite_replaces_the_earlier_outputs(tmp_path: Path, capsys) -> None:
    ckpt = save_model_checkpoint(tmp_path / "m.pth")
    out = tmp_path / "out"
    picture(tmp_path / "a" / "x.png", 30)
    picture(tmp_path / "b" / "x.png", 220)
    assert (
        main(["predict", "--checkpoint", str(ckpt), "--input", str(tmp_path / "a"), "--output", str(out)])
        == 0
    )
    first = (out / "x_overlay.jpg").read_bytes()
    args = [
        "predict",
        "--checkpoint",
        str(ckpt),
        "--input",
        str(tmp_path / "b"),
        "--output",
        str(out),
        "--overwrite",
    ]
    assert main(args) == 0
    assert (out / "x_overlay.jpg").read_bytes() != first

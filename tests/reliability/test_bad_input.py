"""Bad data and bad configs: one clear message on stderr, no traceback, exit 2, nothing lost."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from reliability_helpers import error_lines, run_cli, write_config

from ladseg.cli import main
from ladseg.engine.checkpoint import load_checkpoint
from ladseg.errors import ConfigError


def train_error(cfg: Path, capsys: pytest.CaptureFixture, *overrides: str) -> str:
    """Run ``ladseg train`` in-process; it must exit 2 with a traceback-free message."""
    assert main(["train", str(cfg), *overrides]) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err and "Original" not in err, err
    assert "ladseg train: error: " in err
    return err[err.index("ladseg train: error: ") :]


@pytest.mark.parametrize(
    "breakage, expected",
    [
        ("no_root", [r"missing dataset root folder: .*nowhere", r"classes\.txt"]),
        ("images_renamed", [r"missing image folder of split 'train'", r"images/<split>/<stem>"]),
        ("split_renamed", [r"splits found: \['training', 'val'\]", r"masks/<split>/<stem>\.png"]),
        ("masks_renamed", [r"missing label folder: .*masks/train", r"expected layout"]),
        ("empty_split", [r"split 'train' of .* is empty", r"expected layout"]),
    ],
)
def test_missing_or_misnamed_dataset_folder(
    breakage: str, expected: list[str], tiny_root: Path, tmp_path: Path, capsys
) -> None:
    root = tiny_root
    if breakage == "no_root":
        root = tmp_path / "nowhere"
    elif breakage == "images_renamed":
        (tiny_root / "images").rename(tiny_root / "image")
        (tiny_root / "image" / "train").mkdir(parents=True, exist_ok=True)
    elif breakage == "split_renamed":
        (tiny_root / "images" / "train").rename(tiny_root / "images" / "training")
    elif breakage == "masks_renamed":
        (tiny_root / "masks").rename(tiny_root / "labels")
    elif breakage == "empty_split":
        shutil.rmtree(tiny_root / "images" / "train")
        (tiny_root / "images" / "train").mkdir()
    cfg = write_config(tmp_path / "c.yaml", root, tmp_path / "run")
    message = train_error(cfg, capsys)
    for pattern in expected:
        assert re.search(pattern, message), (pattern, message)
    assert not (tmp_path / "run").exists()  # failed before writing anything


def _truncate(path: Path) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def _shrink_mask(path: Path) -> None:
    Image.fromarray(np.zeros((30, 32), dtype=np.uint8)).save(path)


def _bad_ids(path: Path) -> None:
    mask = np.array(Image.open(path))
    mask[5, 5], mask[6, 6] = 3, 200  # 3 classes: only 0, 1, 2 and 255 are valid
    Image.fromarray(mask).save(path)


@pytest.mark.parametrize(
    "where, damage, expected",
    [
        ("images", _truncate, r"cannot read image .*images/val/001\.png: image file is truncated"),
        ("masks", _shrink_mask, r"label .*masks/val/001\.png is 32x30 \(WxH\) but its image .* is 32x32"),
        ("masks", _bad_ids, r"masks/val/001\.png holds ids \[3, 200\] .*3 classes.*255 = ignore"),
    ],
    ids=["truncated-image", "mask-size", "label-ids"],
)
def test_bad_file_met_during_a_run_keeps_its_checkpoint(
    where: str, damage, expected: str, tiny_root: Path, tmp_path: Path, capsys
) -> None:
    """A bad validation file stops the run at iteration 3 with one line (also from a loader
    worker, whose traceback PyTorch would otherwise paste into the message); the checkpoint of
    iteration 3, written before that validation, stays loadable."""
    damage(tiny_root / where / "val" / "001.png")
    workers = 1 if damage is _truncate else 0  # one case through a worker process (slow to start)
    cfg = write_config(tmp_path / "c.yaml", tiny_root, tmp_path / "run",
                       data={"num_workers": workers}, train={"iters": 4, "val_interval": 3})  # fmt: skip
    message = train_error(cfg, capsys)
    assert re.search(expected, message), message
    assert len(message.strip().splitlines()) == 1, message
    assert load_checkpoint(tmp_path / "run" / "last.pth")["state"]["iteration"] == 3


@pytest.mark.parametrize(
    "override, expected",
    [
        ("data.batchsize=2", "unknown config key data.batchsize; valid keys of data: dataset, root, "),
        ("train.iters=abc", "config key 'train.iters': expected int, got 'abc' (str)"),
        ("data.crop_size=64", "config key 'data.crop_size': expected a list of int, got 64 (int)"),
        (
            "eval.mode=sliding",
            "config key 'eval.mode': expected one of whole, slide, multiscale, got 'sliding'",
        ),
        ("teacher.model.backbon=resnet18", "unknown config key teacher.model.backbon"),
    ],
)
def test_config_errors_name_the_key_and_the_expectation(
    override: str, expected: str, tiny_root: Path, tmp_path: Path, capsys
) -> None:
    cfg = write_config(tmp_path / "c.yaml", tiny_root, tmp_path / "run")
    assert expected in train_error(cfg, capsys, override)
    assert not (tmp_path / "run").exists()


def test_debug_flag_shows_the_traceback(tiny_root: Path, tmp_path: Path) -> None:
    cfg = write_config(tmp_path / "c.yaml", tiny_root, tmp_path / "run")
    with pytest.raises(ConfigError, match="data.batchsize"):
        main(["--debug", "train", str(cfg), "data.batchsize=2"])


def test_a_real_process_exits_2_with_one_stderr_line(tiny_root: Path, tmp_path: Path) -> None:
    cfg = write_config(tmp_path / "c.yaml", tiny_root, tmp_path / "run")
    proc = run_cli(["train", str(cfg), "train.iters=abc"], cwd=tmp_path)
    assert proc.returncode == 2
    assert error_lines(proc.stderr) == [
        "ladseg train: error: config key 'train.iters': expected int, got 'abc' (str)"
    ]

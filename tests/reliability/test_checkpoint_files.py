"""Every file given as a checkpoint is named for what it is; a damaged last.pth resumes from .prev."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from reliability_helpers import cli_error, save_model_checkpoint, write_config

from ladseg import __version__
from ladseg.cli import main
from ladseg.engine.checkpoint import CHECKPOINT_FORMAT, load_checkpoint

#: the opening bytes of an ONNX model torch.onnx.export wrote (ir_version 9, producer "pytorch")
ONNX_HEAD = b"\x08\x09\x12\x07pytorch\x1a\x062.10.0:\x94\x02\n\x83\x01\n\x05input\n\x06weight"


def odd_file(kind: str, path: Path) -> Path:
    """A file of ``kind`` saved under a checkpoint's name."""
    if kind == "text":
        path.write_text("model weights: see the link in the README\n")
    elif kind == "json":
        path.write_text(json.dumps({"model": "deeplabv3", "weights": [0.1, 0.2]}))
    elif kind == "html":
        path.write_text("<!DOCTYPE html>\n<html><head><title>Sign in</title></head><body></body></html>\n")
    elif kind == "lfs":
        path.write_text("version https://git-lfs.github.com/spec/v1\noid sha256:4d7a\nsize 45991\n")
    elif kind == "onnx":
        path.write_bytes(ONNX_HEAD + bytes(range(256)) * 4)
    elif kind == "empty":
        path.write_bytes(b"")
    elif kind == "no_spec_fields":  # ladseg's layout, but meta.spec cannot build a model
        torch.save({"model": {"w": torch.zeros(2)}, "meta": {"spec": {"name": "fcn"}}}, path)
    elif kind == "int_keys":
        torch.save({101: torch.zeros(2)}, path)
    return path


EXPECTED = {
    "text": "is not a PyTorch file: it is a text file (it starts with 'model weights: see the link in the",
    "json": "is not a PyTorch file: it is a JSON file",
    "html": "is not a PyTorch file: it is an HTML page",
    "lfs": "is not a PyTorch file: it is a Git LFS pointer, not the file itself (fetch it with 'git lfs pull')",
    "onnx": "is not a PyTorch file: it is an ONNX model",
    "empty": "is an empty file (0 bytes)",
    "no_spec_fields": "whose meta.spec lacks backbone, num_classes",
    "int_keys": "is a torch file whose keys are not parameter names (found the key 101)",
}


@pytest.fixture
def image(tmp_path: Path) -> Path:
    path = tmp_path / "photo.png"
    Image.fromarray(np.full((16, 16, 3), 90, dtype=np.uint8)).save(path)
    return path


@pytest.mark.parametrize("kind", sorted(EXPECTED))
def test_each_odd_checkpoint_file_is_named(kind: str, tmp_path: Path, image: Path, capsys) -> None:
    ckpt = odd_file(kind, tmp_path / "model.pth")
    message = cli_error(["predict", "--checkpoint", str(ckpt), "--input", str(image), "--output",
                         str(tmp_path / "out")], capsys)  # fmt: skip
    assert str(ckpt) in message and EXPECTED[kind] in message, message
    assert "unsafe pickle" not in message and "weights_only" not in message, message


def test_a_real_unsafe_pickle_still_quotes_what_was_refused(tmp_path: Path, image: Path, capsys) -> None:
    path = tmp_path / "pickled.pth"
    torch.save({"model": {}, "meta": {"spec": Path("x")}}, path)  # a class torch will not load
    message = cli_error(["predict", "--checkpoint", str(path), "--input", str(image), "--output",
                         str(tmp_path / "out")], capsys)  # fmt: skip
    assert "unsafe pickle" in message and "will likely succeed" not in message, message


@pytest.mark.parametrize("damage", ["empty", "truncated"])
def test_a_damaged_last_pth_resumes_from_the_previous_one(
    damage: str, tiny_root: Path, tmp_path: Path, capsys
) -> None:
    run = tmp_path / "run"
    cfg = write_config(tmp_path / "c.yaml", tiny_root, run)
    assert main(["train", str(cfg)]) == 0  # last.pth at 2, last.pth.prev at 1
    capsys.readouterr()
    last = run / "last.pth"
    good = last.read_bytes()
    last.unlink()  # not the inode .prev shares
    damaged = b"" if damage == "empty" else good[: len(good) // 2]
    last.write_bytes(damaged)
    assert main(["train", str(cfg), "train.iters=3"]) == 0
    out = capsys.readouterr().out
    assert f"{last} cannot be read" in out and "resuming from last.pth.prev" in out, out
    assert f"resumed {run / 'last.pth.prev'} at iteration 1" in out, out
    assert (run / "last.pth.damaged").read_bytes() == damaged  # kept for a look, out of the rotation
    assert load_checkpoint(last)["meta"]["iteration"] == 3
    assert load_checkpoint(run / "last.pth.prev")["meta"]["iteration"] == 2


def test_checkpoints_record_the_ladseg_version_and_format(tiny_root: Path, tmp_path: Path) -> None:
    cfg = write_config(tmp_path / "c.yaml", tiny_root, tmp_path / "run", train={"iters": 1})
    assert main(["train", str(cfg)]) == 0
    meta = load_checkpoint(tmp_path / "run" / "last.pth")["meta"]
    assert meta["ladseg_version"] == __version__ and meta["format"] == CHECKPOINT_FORMAT


def test_a_newer_checkpoint_format_is_refused_by_name(tmp_path: Path, image: Path, capsys) -> None:
    path = save_model_checkpoint(tmp_path / "future.pth")
    payload = load_checkpoint(path)
    payload["meta"].update(format=CHECKPOINT_FORMAT + 1, ladseg_version="9.0")
    torch.save(payload, path)
    message = cli_error(["predict", "--checkpoint", str(path), "--input", str(image), "--output",
                         str(tmp_path / "out")], capsys)  # fmt: skip
    assert f"has checkpoint format {CHECKPOINT_FORMAT + 1} (written by ladseg 9.0)" in message, message
    assert "upgrade ladseg" in message

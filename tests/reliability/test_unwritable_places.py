"""Places that cannot be written (a file where a folder is expected, a read-only folder, a full
disk): one line naming the option and the place, before the work starts where it can be known."""

from __future__ import annotations

import errno
import os
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from reliability_helpers import cli_error, save_model_checkpoint, write_config

from ladseg.engine.checkpoint import load_checkpoint


@pytest.fixture
def unwritable(tmp_path: Path):
    """A folder this process cannot write in: mode 0555 for a user; /sys (read-only) for root."""
    if os.geteuid() != 0:
        folder = tmp_path / "read-only"
        folder.mkdir()
        folder.chmod(0o555)
        yield folder
        folder.chmod(0o755)
        return
    folder = Path("/sys")
    if not folder.is_dir() or os.access(folder, os.W_OK) and _can_write(folder):
        pytest.skip("no read-only folder for root here")
    yield folder


def _can_write(folder: Path) -> bool:
    import tempfile

    try:
        with tempfile.TemporaryFile(dir=folder):
            return True
    except OSError:
        return False


@pytest.fixture
def predict_args(tmp_path: Path) -> list[str]:
    Image.fromarray(np.zeros((16, 16, 3), dtype=np.uint8)).save(tmp_path / "a.png")
    ckpt = save_model_checkpoint(tmp_path / "m.pth")
    return ["predict", "--checkpoint", str(ckpt), "--input", str(tmp_path / "a.png")]


def test_predict_output_that_is_a_file(predict_args: list[str], tmp_path: Path, capsys) -> None:
    (tmp_path / "taken").write_text("x")
    message = cli_error([*predict_args, "--output", str(tmp_path / "taken")], capsys)
    assert message == f"--output {tmp_path / 'taken'} is a file, not a folder"
    message = cli_error([*predict_args, "--output", str(tmp_path / "taken" / "masks")], capsys)
    assert message.startswith(f"--output {tmp_path / 'taken' / 'masks'}: cannot write there: ")
    assert "a part of the path is a file, not a folder" in message or "a file is in the way" in message


def test_predict_output_in_a_read_only_folder(predict_args: list[str], unwritable: Path, capsys) -> None:
    message = cli_error([*predict_args, "--output", str(unwritable / "masks")], capsys)
    assert message.startswith(f"--output {unwritable / 'masks'}: cannot write there: ")


def test_predict_on_a_full_disk_stops_with_the_file(predict_args: list[str], tmp_path: Path, capsys,
                                                    monkeypatch) -> None:  # fmt: skip
    def full_disk(self, fp, *args, **kwargs):
        Path(fp).write_bytes(b"\x89PNG half")
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(Image.Image, "save", full_disk)
    message = cli_error([*predict_args, "--output", str(tmp_path / "out")], capsys)
    assert (
        message
        == f"cannot write {tmp_path / 'out' / 'a.png'}: No space left on device; 0 of 1 images were done"
    )
    assert not (tmp_path / "out" / "a.png").exists()  # no half-written mask left behind


def test_eval_json_on_a_full_disk_and_in_the_wrong_place(tiny_root: Path, tmp_path: Path, capsys) -> None:
    cfg = write_config(tmp_path / "c.yaml", tiny_root, tmp_path / "run")
    ckpt = save_model_checkpoint(tmp_path / "m.pth")
    argv = ["eval", str(cfg), "--checkpoint", str(ckpt), "--json"]
    if Path("/dev/full").exists():  # a real full disk: every write fails with ENOSPC
        message = cli_error([*argv, "/dev/full"], capsys)
        assert message.startswith("--json: cannot write /dev/full: No space left on device (the disk is full")
    message = cli_error([*argv, str(tmp_path)], capsys)
    assert message == f"--json {tmp_path} is a folder; give a file name"
    (tmp_path / "file").write_text("x")
    message = cli_error([*argv, str(tmp_path / "file" / "m.json")], capsys)
    assert message.startswith(
        f"--json {tmp_path / 'file' / 'm.json'}: its folder {tmp_path / 'file'} is a file"
    )


def test_check_data_json_in_a_read_only_folder(
    tiny_root: Path, tmp_path: Path, unwritable: Path, capsys
) -> None:
    cfg = write_config(tmp_path / "c.yaml", tiny_root, tmp_path / "run")
    message = cli_error(["check-data", str(cfg), "--json", str(unwritable / "report.json")], capsys)
    assert message.startswith(
        f"--json {unwritable / 'report.json'}: its folder {unwritable}: cannot write there"
    )
    if Path("/dev/full").exists():
        message = cli_error(["check-data", str(cfg), "--json", "/dev/full"], capsys)
        assert message.startswith("--json: cannot write /dev/full: No space left on device")


def test_train_work_dir_that_cannot_be_a_folder(
    tiny_root: Path, tmp_path: Path, unwritable: Path, capsys
) -> None:
    (tmp_path / "taken").write_text("x")
    for work_dir, expected in [
        (tmp_path / "taken", f"run.work_dir {tmp_path / 'taken'} cannot be a folder"),
        (tmp_path / "taken" / "run", f"run.work_dir {tmp_path / 'taken' / 'run'} cannot be a folder "
                                     f"({tmp_path / 'taken'} is a file)"),
        (unwritable / "run", f"run.work_dir {unwritable / 'run'}: cannot write in {unwritable}: "),
    ]:  # fmt: skip
        cfg = write_config(tmp_path / "c.yaml", tiny_root, work_dir)
        assert cli_error(["train", str(cfg)], capsys).startswith(expected)


def test_a_full_disk_in_training_keeps_the_last_good_checkpoint(
    tiny_root: Path, tmp_path: Path, capsys, monkeypatch
) -> None:
    """The second checkpoint write fails half-way (ENOSPC): one line naming last.pth, and the
    checkpoint of iteration 1 stays complete and loadable, with no temporary file left."""
    real_save, calls = torch.save, []

    def fills_up(obj, f, *args, **kwargs):
        calls.append(1)
        if len(calls) < 2:
            return real_save(obj, f, *args, **kwargs)
        f.write(b"PK\x03\x04 half a checkpoint")
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(torch, "save", fills_up)
    run = tmp_path / "run"
    cfg = write_config(tmp_path / "c.yaml", tiny_root, run, train={"iters": 3, "checkpoint_interval": 1})
    message = cli_error(["train", str(cfg)], capsys)
    monkeypatch.undo()
    assert message.startswith(f"{run / 'last.pth'}: No space left on device (the disk is full")
    assert message.endswith(f"training stopped, {run / 'last.pth'} (iteration 1) is intact: "
                            "run the same command again to resume from it")  # fmt: skip
    assert load_checkpoint(run / "last.pth")["state"]["iteration"] == 1
    assert not [p.name for p in run.iterdir() if p.name.endswith(".tmp")]

"""Checkpoints that do not fit (architecture, class count, teacher) and pickles that would run code."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from reliability_helpers import save_model_checkpoint, write_config

from ladseg.cli import main
from ladseg.engine.checkpoint import load_checkpoint


def cli_error(args: list[str], capsys: pytest.CaptureFixture) -> str:
    assert main(args) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err, err
    return err[err.index(f"ladseg {args[0]}: error: ") :]


def test_eval_with_a_checkpoint_of_another_class_count(tiny_root: Path, tmp_path: Path, capsys) -> None:
    ckpt = save_model_checkpoint(tmp_path / "five.pth", k=5)
    cfg = write_config(tmp_path / "c.yaml", tiny_root, tmp_path / "run")
    message = cli_error(["eval", str(cfg), "--checkpoint", str(ckpt)], capsys)
    assert "five.pth predicts 5 classes but 'folder' has 3" in message


def test_init_checkpoint_of_another_architecture(tiny_root: Path, tmp_path: Path, capsys) -> None:
    ckpt = save_model_checkpoint(tmp_path / "psp.pth", name="pspnet", k=5)
    cfg = write_config(tmp_path / "c.yaml", tiny_root, tmp_path / "run", train={"init_checkpoint": str(ckpt)})
    message = cli_error(["train", str(cfg)], capsys)
    assert "psp.pth was saved for another model" in message
    assert "name: checkpoint 'pspnet' vs model 'fcn'" in message
    assert "num_classes: checkpoint 5 vs model 3" in message


def test_teacher_with_other_classes_than_the_student(tiny_root: Path, tmp_path: Path, capsys) -> None:
    ckpt = save_model_checkpoint(tmp_path / "teacher.pth", k=5)
    cfg = write_config(tmp_path / "c.yaml", tiny_root, tmp_path / "run",
                       method={"name": "distill"}, teacher={"checkpoint": str(ckpt)})  # fmt: skip
    message = cli_error(["train", str(cfg)], capsys)
    assert "teacher.pth predicts 5 classes but the student has 3" in message


def test_resume_into_another_architecture_is_explained(tiny_root: Path, tmp_path: Path, capsys) -> None:
    cfg = write_config(tmp_path / "c.yaml", tiny_root, tmp_path / "run", train={"iters": 1})
    assert main(["train", str(cfg)]) == 0
    message = cli_error(["train", str(cfg), "train.iters=2", "model.name=pspnet"], capsys)
    assert "name: checkpoint 'fcn' vs model 'pspnet'" in message


class RunsCode:
    """Unpickling calls ``open(marker, "w")``: a file appears iff the payload ran."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (open, (str(self.marker), "w"))


def evil_checkpoint(path: Path, marker: Path) -> Path:
    model_ckpt = save_model_checkpoint(path.with_name("plain.pth"))
    payload = load_checkpoint(model_ckpt)
    payload["meta"]["spec"] = RunsCode(marker)
    torch.save(payload, path)
    return path


def test_the_payload_runs_when_loaded_unsafely(tmp_path: Path) -> None:
    """Sanity check of the fixture: without weights_only the pickle does create its file."""
    marker = tmp_path / "pwned"
    evil = evil_checkpoint(tmp_path / "evil.pth", marker)
    torch.load(evil, weights_only=False)
    assert marker.exists()


@pytest.mark.parametrize("route", ["eval --checkpoint", "model.pretrained", "teacher.checkpoint"])
def test_a_pickle_that_runs_code_is_refused(route: str, tiny_root: Path, tmp_path: Path, capsys) -> None:
    marker = tmp_path / "pwned"
    evil = evil_checkpoint(tmp_path / "evil.pth", marker)
    if route == "eval --checkpoint":
        cfg = write_config(tmp_path / "c.yaml", tiny_root, tmp_path / "run")
        args = ["eval", str(cfg), "--checkpoint", str(evil)]
        expected = "refusing to load checkpoint"
    elif route == "model.pretrained":
        cfg = write_config(tmp_path / "c.yaml", tiny_root, tmp_path / "run",
                           model={"backbone": "resnet18", "pretrained": str(evil)})  # fmt: skip
        args = ["train", str(cfg)]
        expected = "refusing to load weights file"
    else:
        cfg = write_config(tmp_path / "c.yaml", tiny_root, tmp_path / "run",
                           method={"name": "distill"}, teacher={"checkpoint": str(evil)})  # fmt: skip
        args = ["train", str(cfg)]
        expected = "refusing to load checkpoint"
    message = cli_error(args, capsys)
    assert "evil.pth" in message and expected in message and "unsafe pickle" in message, message
    assert not marker.exists()  # the payload never ran
    assert not (tmp_path / "run" / "last.pth").exists()

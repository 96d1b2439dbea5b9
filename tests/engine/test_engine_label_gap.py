"""A label-assisted teacher's validation logs its score without the label and the label-use gap."""

from __future__ import annotations

from pathlib import Path

import pytest
from tiny_data import make_folder_dataset, tiny_config

from ladseg.engine.logging import read_metrics
from ladseg.engine.trainer import Trainer, train


def test_teacher_validation_logs_the_label_use_gap(tmp_path: Path) -> None:
    root = make_folder_dataset(tmp_path / "data")
    teacher = {"name": "lad_teacher", "encoder": {"kind": "onehot"}}
    cfg = tiny_config(root, tmp_path / "run", model={"in_channels": 7}, method=teacher)
    train(cfg)
    vals = [r for r in read_metrics(tmp_path / "run") if r["type"] == "val"]
    assert vals, "no validation record"
    for record in vals:
        assert record["label_gap"] == pytest.approx(record["mIoU"] - record["mIoU_no_label"])
    # the logged no-label score is the network's own score with a zero label channel
    trainer = Trainer(cfg)  # resumes the finished run: the same weights
    trainer._prepare()
    blind = trainer.validate(trainer.method.inference_input_without_label)
    assert 100 * blind.miou == pytest.approx(vals[-1]["mIoU_no_label"], abs=1e-4)


def test_image_only_validation_logs_no_gap(tmp_path: Path) -> None:
    root = make_folder_dataset(tmp_path / "data")
    train(tiny_config(root, tmp_path / "run"))
    vals = [r for r in read_metrics(tmp_path / "run") if r["type"] == "val"]
    assert vals and all("label_gap" not in r for r in vals)

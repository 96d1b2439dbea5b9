"""End to end on the embedded data, through the real engine: a LAD teacher (image + label channel)
beats the same network trained without the label, and it relies on the label channel.

Slow (two short CPU trainings of an FCN-ResNet18 at 64x64); run with ``pytest -m slow``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

pytestmark = pytest.mark.slow

SMALL = {"num_train": 24, "num_val": 8, "size": 64}
ITERS = 150


def _config(root: Path, work_dir: Path, method: dict[str, Any], in_channels: int) -> Any:
    from ladseg.engine.config import config_from_dict

    return config_from_dict(
        {
            "run": {"name": work_dir.name, "work_dir": str(work_dir), "seed": 0, "device": "cpu"},
            "model": {
                "name": "fcn",
                "backbone": "resnet18",
                "in_channels": in_channels,
                "head": {"channels": 32},
            },
            "data": {
                "dataset": "embedded",
                "root": str(root),
                "crop_size": [64, 64],
                "scale_range": [1.0, 1.0],
                "batch_size": 4,
                "num_workers": 0,
                "kwargs": SMALL,
            },
            "method": method,
            "optim": {"lr": 0.05},
            "train": {
                "iters": ITERS,
                "val_interval": ITERS,
                "log_interval": 10,
                "checkpoint_interval": ITERS,
            },
            "eval": {"mode": "whole", "batch_size": 4},
        }
    )


def test_label_assisted_teacher_beats_the_same_network_without_labels(tmp_path: Path) -> None:
    trainer = pytest.importorskip("ladseg.engine.trainer")
    from ladseg.data import generate_embedded

    root = generate_embedded(tmp_path / "embedded", seed=0, **SMALL)
    plain = trainer.train(_config(root, tmp_path / "supervised", {"name": "supervised"}, 3))
    lad = trainer.train(
        _config(root, tmp_path / "lad_teacher", {"name": "lad_teacher", "two_path_batch": True}, 4)
    )
    assert lad["mIoU"] > plain["mIoU"], (lad["mIoU"], plain["mIoU"])

"""End to end on the embedded data, through the real engine: a LAD teacher (image + label channel)
beats the same network trained without the label, and it relies on the label channel.

Opt-in (``LADSEG_E2E=1``; ``LADSEG_E2E_ITERS`` sets the length, default 300): NOT yet verified to pass.
On the shared 2-core CPU, 80 iterations left both runs at ~8 % mIoU (supervised 8.27, LAD teacher
7.78: nothing learned yet) and 150 iterations took over 15 minutes, so the iteration budget at which
the label's advantage shows still has to be measured (a GPU run, ``run.device=auto``, is minutes).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(os.environ.get("LADSEG_E2E") != "1", reason="opt-in end-to-end run: set LADSEG_E2E=1"),
]

SMALL = {"num_train": 24, "num_val": 8, "size": 64}
ITERS = int(os.environ.get("LADSEG_E2E_ITERS", "300"))


def _config(root: Path, work_dir: Path, method: dict[str, Any], in_channels: int) -> Any:
    from ladseg.engine.config import config_from_dict

    return config_from_dict(
        {
            "run": {"name": work_dir.name, "work_dir": str(work_dir), "seed": 0, "device": "auto"},
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

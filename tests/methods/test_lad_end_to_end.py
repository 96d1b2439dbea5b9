"""End to end on the embedded data, through the real engine: a LAD teacher (image + label channels)
trained with the dual-path method beats the same network trained without labels, and its advantage
comes from the label channels (evaluated with them zeroed it falls back).

* Always on (CI size, about a minute on 2 CPU cores): the one-hot label encoding. A network from random
  weights learns to read one-hot channels within a few dozen steps, so this checks the whole label
  path (encoding in training, the widened first conv, checkpoint, evaluation with and without
  labels) and not the learning speed.
* Opt-in (``LADSEG_E2E=1``; ``LADSEG_E2E_ITERS``, default 600): the reference encoding (per-image
  random codes, which say which pixels belong together but not their class). Measured on the
  2-core CPU (seed-1 embedded copy, STDC1, AdamW 3e-3, crop 64, batch 8): after 200 steps the teacher
  gave 29.0 mIoU with its label channel and 28.9 with it zeroed: not yet label-aware. The reference
  trains 40k iterations; how many the embedded task needs is still to be measured on a GPU.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

SMALL = {"num_train": 48, "num_val": 16, "size": 64}


def _config(root: Path, work_dir: Path, method: dict[str, Any], in_channels: int, iters: int) -> Any:
    from ladseg.engine.config import config_from_dict

    return config_from_dict(
        {
            "run": {"name": work_dir.name, "work_dir": str(work_dir), "seed": 0, "device": "auto"},
            "model": {"name": "stdc", "backbone": "stdc1", "in_channels": in_channels, "aux": True},
            "data": {
                "dataset": "embedded",
                "root": str(root),
                "crop_size": [64, 64],
                "scale_range": [1.0, 1.0],
                "batch_size": 8,
                "num_workers": 0,
                "kwargs": SMALL,
            },
            "method": method,
            "optim": {"name": "adamw", "lr": 0.003, "warmup_iters": 5},
            "train": {
                "iters": iters,
                "val_interval": iters,
                "log_interval": 10,
                "checkpoint_interval": iters,
            },
            "eval": {"mode": "whole", "batch_size": 8},
        }
    )


def _teacher_vs_plain(tmp_path: Path, encoder: dict[str, Any], iters: int) -> tuple[float, float, float]:
    """(teacher mIoU with labels, the same teacher with its label channels zeroed, supervised mIoU)."""
    from ladseg.data import generate_embedded
    from ladseg.engine.checkpoint_eval import evaluate_checkpoint
    from ladseg.engine.trainer import train
    from ladseg.methods.label_encoding import channels

    root = generate_embedded(tmp_path / "embedded", seed=0, **SMALL)
    plain = train(_config(root, tmp_path / "supervised", {"name": "supervised"}, 3, iters))
    teacher_method = {"name": "lad_teacher", "encoder": encoder, "eval_label": "fixed"}
    cfg = _config(root, tmp_path / "teacher", teacher_method, 3 + channels(encoder["kind"], 8), iters)
    with_labels = train(cfg)
    without, _ = evaluate_checkpoint(
        cfg, tmp_path / "teacher" / "last.pth", method_params={"eval_label": "none"}, progress=False
    )
    return with_labels["mIoU"], without.summary()["mIoU"], plain["mIoU"]


def test_onehot_teacher_uses_its_labels_and_beats_the_same_network_without(tmp_path: Path) -> None:
    with_labels, zeroed, plain = _teacher_vs_plain(tmp_path, {"kind": "onehot", "noise": 0.03}, iters=80)
    assert with_labels > plain + 20.0, (with_labels, plain)
    assert with_labels > zeroed + 20.0, (with_labels, zeroed)


@pytest.mark.skipif(os.environ.get("LADSEG_E2E") != "1", reason="opt-in long run: set LADSEG_E2E=1")
def test_reference_encoding_teacher_beats_the_same_network_without_labels(tmp_path: Path) -> None:
    iters = int(os.environ.get("LADSEG_E2E_ITERS", "600"))
    with_labels, zeroed, plain = _teacher_vs_plain(tmp_path, {"kind": "random_codes", "noise": 0.03}, iters)
    assert with_labels > plain and with_labels > zeroed, (with_labels, zeroed, plain)

"""Shared test data: a tiny 3-class 'folder' dataset on disk and a config that trains on it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from ladseg.engine.config import Config, config_from_dict

CLASSES = ("background", "red", "blue")
COLORS = np.array([[20, 20, 20], [220, 40, 40], [40, 40, 220]], dtype=np.uint8)


def make_folder_dataset(root: Path, n_train: int = 4, n_val: int = 2, size: int = 32, seed: int = 0) -> Path:
    """Rectangles of class 1 and 2 over class 0, colour = class (+ noise); a 255 top row."""
    rng = np.random.default_rng(seed)
    root.mkdir(parents=True, exist_ok=True)
    (root / "classes.txt").write_text("\n".join(CLASSES) + "\n")
    for split, n in (("train", n_train), ("val", n_val)):
        (root / "images" / split).mkdir(parents=True, exist_ok=True)
        (root / "masks" / split).mkdir(parents=True, exist_ok=True)
        for i in range(n):
            mask = np.zeros((size, size), dtype=np.uint8)
            for cls in (1, 2):
                y, x = rng.integers(0, size // 2, 2)
                h, w = rng.integers(size // 4, size // 2, 2)
                mask[y : y + h, x : x + w] = cls
            image = COLORS[mask].astype(np.int16) + rng.integers(-20, 20, (size, size, 3))
            mask[0, :] = 255
            Image.fromarray(image.clip(0, 255).astype(np.uint8)).save(
                root / "images" / split / f"{i:03d}.png"
            )
            Image.fromarray(mask).save(root / "masks" / split / f"{i:03d}.png")
    return root


def tiny_config_dict(root: Path, work_dir: Path, **sections: dict[str, Any]) -> dict[str, Any]:
    """The raw config of :func:`tiny_config`: ``sections`` update the default sections key by key."""
    raw: dict[str, Any] = {
        "run": {"name": "tiny", "work_dir": str(work_dir), "seed": 0, "device": "cpu"},
        "model": {"name": "fcn", "backbone": "resnet18", "head": {"channels": 16}},
        "data": {"dataset": "folder", "root": str(root), "crop_size": [32, 32], "scale_range": [1.0, 1.0],
                 "batch_size": 2, "num_workers": 0},
        "optim": {"lr": 0.01},
        "train": {"iters": 4, "val_interval": 4, "log_interval": 2, "checkpoint_interval": 2},
        "eval": {"mode": "whole", "batch_size": 1},
    }  # fmt: skip
    for section, values in sections.items():
        raw.setdefault(section, {}).update(values)
    return raw


def tiny_config(root: Path, work_dir: Path, **sections: dict[str, Any]) -> Config:
    """FCN-ResNet18 at 32x32, batch 2, on the tiny folder dataset; ``sections`` override keys."""
    return config_from_dict(tiny_config_dict(root, work_dir, **sections))


def random_checkpoint(path: Path, name: str = "pspnet", in_channels: int = 3, seed: int = 0) -> Path:
    """A random-weight ResNet-18 segmentor (3 classes, 16-channel head) saved as a ladseg checkpoint,
    with non-trivial BatchNorm statistics as after training."""
    import torch

    from ladseg.engine.checkpoint import save_checkpoint
    from ladseg.models import build_model

    torch.manual_seed(seed)
    model = build_model(name, "resnet18", 3, in_channels=in_channels, head={"channels": 16})
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.uniform_(-0.2, 0.2)
                m.running_var.uniform_(0.5, 2.0)
    meta = {"spec": dict(model.spec), "class_names": ["a", "b", "c"], "normalize": "imagenet"}
    return save_checkpoint(path, {"model": model.state_dict(), "meta": meta})

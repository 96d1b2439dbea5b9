"""Split slices (a held-out part of train), ``image label`` list files, and the fixed resize ratio."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from data_helpers import id_grid, write_image, write_label

from ladseg.data import build_dataset
from ladseg.data.base import parse_split_slice
from ladseg.data.transforms import build_transforms
from ladseg.errors import ConfigError, DatasetError


def make_camvid(root: Path, split: str = "train", n: int = 5) -> Path:
    for i in range(n):
        write_image(root / split / f"f{i:03d}.png", seed=i)
        write_label(root / f"{split}annot" / f"f{i:03d}.png", id_grid([0, 3, 11]))
    return root


def test_split_slice_keeps_file_name_order(tmp_path: Path) -> None:
    root = make_camvid(tmp_path)
    fit, held = build_dataset("camvid", root, "train[:3]"), build_dataset("camvid", root, "train[3:]")
    assert [s.name for s in fit.samples] == ["f000", "f001", "f002"]
    assert [s.name for s in held.samples] == ["f003", "f004"]
    assert fit.split == held.split == "train" and fit.num_classes == 11


def test_bad_or_empty_split_slice_is_a_clear_error(tmp_path: Path) -> None:
    root = make_camvid(tmp_path)
    with pytest.raises(ConfigError, match="NAME\\[start:stop\\]"):
        build_dataset("camvid", root, "train[a:b]")
    with pytest.raises(DatasetError, match="holds no item"):
        build_dataset("camvid", root, "train[10:]")
    assert parse_split_slice("val") == ("val", None)
    assert parse_split_slice("train[-2:]") == ("train", slice(-2, None))


def test_camvid_reads_an_image_label_list_written_for_another_machine(tmp_path: Path) -> None:
    root = tmp_path / "CamVid"
    make_camvid(tmp_path / "elsewhere", "val", n=2)
    # the files live under root/images, root/labels; the list names them with another machine's prefix
    for i in range(2):
        (root / "images").mkdir(parents=True, exist_ok=True)
        (root / "labels").mkdir(parents=True, exist_ok=True)
        (tmp_path / "elsewhere" / "val" / f"f{i:03d}.png").rename(root / "images" / f"f{i:03d}.png")
        (tmp_path / "elsewhere" / "valannot" / f"f{i:03d}.png").rename(root / "labels" / f"f{i:03d}.png")
    lines = [f"/SegNet/CamVid/images/f{i:03d}.png /SegNet/CamVid/labels/f{i:03d}.png" for i in range(2)]
    (root / "val.txt").write_text("\n".join(lines) + "\n")
    ds = build_dataset("camvid", root, "val")
    assert len(ds) == 2
    mask = ds[1]["mask"]
    assert set(np.unique(np.asarray(mask)).tolist()) == {0, 3, 255}  # void (11) -> ignore
    (root / "val.txt").write_text("images/f000.png\n")
    with pytest.raises(DatasetError, match="expected 'image label'"):
        build_dataset("camvid", root, "val")
    (root / "val.txt").write_text("images/nope.png labels/f000.png\n")
    with pytest.raises(DatasetError, match="nope.png not found under"):
        build_dataset("camvid", root, "val")


def test_resize_ratio_scales_evaluation_and_training_samples() -> None:
    sample = {"image": np.zeros((40, 60, 3), np.uint8), "mask": id_grid([0, 1, 2], 40, 60)}
    val = build_transforms(False, normalize="imagenet", resize_ratio=0.5)(sample)
    assert tuple(val["image"].shape) == (3, 20, 30) and tuple(val["mask"].shape) == (20, 30)
    assert set(val["mask"].unique().tolist()) == {0, 1, 2}  # nearest: no new ids
    state = torch.random.get_rng_state()
    build_transforms(False, normalize="imagenet", resize_ratio=0.5)(sample)
    assert torch.equal(state, torch.random.get_rng_state())  # a fixed ratio draws no random number
    # training: scale_range [1, 1] times the ratio, then a crop larger than the result is padded
    train = build_transforms(True, (24, 24), scale_range=(1.0, 1.0), flip=False, resize_ratio=0.5)(sample)
    assert tuple(train["image"].shape) == (3, 24, 24)
    assert int((train["mask"] != 255).sum()) == 20 * 24  # 20 rows of the resized image, the rest padding

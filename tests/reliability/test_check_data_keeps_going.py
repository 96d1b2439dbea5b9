"""``ladseg check-data`` keeps going: a missing label is one more bad file, and an unreadable
split does not hide the report of the splits that could be read."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
from PIL import Image
from reliability_helpers import cli_error, write_config

from ladseg.cli import main
from ladseg.data.base import collect_missing_files
from ladseg.data.datasets import VOCDataset


def test_a_missing_label_is_listed_with_every_other_bad_file(tiny_root: Path, tmp_path: Path, capsys) -> None:
    (tiny_root / "masks" / "train" / "001.png").unlink()
    (tiny_root / "masks" / "train" / "003.png").unlink()
    Image.fromarray(np.zeros((30, 32), dtype=np.uint8)).save(tiny_root / "masks" / "train" / "002.png")
    cfg = write_config(tmp_path / "c.yaml", tiny_root, tmp_path / "run")
    assert main(["check-data", str(cfg), "--split", "train", "--json", str(tmp_path / "r.json")]) == 1
    assert "3 bad files in 2 items" in capsys.readouterr().err
    (split,) = json.loads((tmp_path / "r.json").read_text())["splits"]
    found = {(Path(b["path"]).name, b["kind"]) for b in split["bad_files"]}
    assert found == {("001.png", "missing"), ("003.png", "missing"), ("002.png", "size")}
    assert split["items"] == 2  # the two complete pairs were scanned
    assert main(["check-data", str(cfg), "--split", "train"]) == 1
    out = capsys.readouterr().out
    assert f"[missing] missing label of image {tiny_root / 'images' / 'train' / '001.png'}: " in out


def test_training_still_stops_at_a_missing_label(tiny_root: Path, tmp_path: Path, capsys) -> None:
    (tiny_root / "masks" / "train" / "001.png").unlink()
    cfg = write_config(tmp_path / "c.yaml", tiny_root, tmp_path / "run")
    message = cli_error(["train", str(cfg)], capsys)
    assert message.startswith(f"missing label of image {tiny_root / 'images' / 'train' / '001.png'}: ")


def test_an_empty_split_keeps_the_report_of_the_other(tiny_root: Path, tmp_path: Path, capsys) -> None:
    shutil.rmtree(tiny_root / "images" / "val")
    (tiny_root / "images" / "val").mkdir()
    cfg = write_config(tmp_path / "c.yaml", tiny_root, tmp_path / "run")
    assert main(["check-data", str(cfg), "--json", str(tmp_path / "r.json")]) == 2
    err = capsys.readouterr().err
    assert f"ladseg check-data: error: split 'val' of {tiny_root} is empty" in err
    assert "Traceback" not in err
    report = json.loads((tmp_path / "r.json").read_text())
    assert [s["split"] for s in report["splits"]] == ["train"] and report["splits"][0]["items"] == 4
    assert [s["split"] for s in report["unreadable_splits"]] == ["val"]
    assert main(["check-data", str(cfg)]) == 2
    assert "folder/train" in capsys.readouterr().out


def test_list_datasets_collect_missing_images_and_labels(tmp_path: Path) -> None:
    """VOC lists ids: a listed image or label that is missing is collected (both of an id)."""
    root = tmp_path / "VOC2012"
    for folder in ("JPEGImages", "SegmentationClass", "ImageSets/Segmentation"):
        (root / folder).mkdir(parents=True)
    (root / "ImageSets" / "Segmentation" / "val.txt").write_text("a\nb\nc\n")
    for name in ("a", "c"):
        Image.fromarray(np.zeros((8, 8, 3), dtype=np.uint8)).save(root / "JPEGImages" / f"{name}.jpg")
    Image.fromarray(np.zeros((8, 8), dtype=np.uint8)).save(root / "SegmentationClass" / "a.png")
    with collect_missing_files() as missing:
        dataset = VOCDataset(root, "val")
    assert [s.name for s in dataset.samples] == ["a"]
    assert sorted(p.name for p, _ in missing) == ["b.jpg", "b.png", "c.png"]


def test_a_split_whose_every_label_is_missing_lists_them(tiny_root: Path, tmp_path: Path, capsys) -> None:
    for mask in (tiny_root / "masks" / "val").glob("*.png"):
        mask.unlink()
    cfg = write_config(tmp_path / "c.yaml", tiny_root, tmp_path / "run")
    assert main(["check-data", str(cfg)]) == 2
    captured = capsys.readouterr()
    assert "folder/train" in captured.out and "folder/val: missing files (2):" in captured.out
    assert f"[missing] missing label of image {tiny_root / 'images' / 'val' / '001.png'}" in captured.out
    assert "2 bad files in 4 items" in captured.err and "split 'val' of" in captured.err

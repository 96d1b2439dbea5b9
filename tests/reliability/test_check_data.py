"""``ladseg check-data``: one scan, every bad file listed, ids found, class pixel frequencies."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from reliability_helpers import write_config
from tiny_data import CLASSES

from ladseg.cli import main
from ladseg.data import build_dataset
from ladseg.data.check import scan_dataset
from ladseg.errors import DatasetError


def expected_pixels(root: Path, splits: tuple[str, ...]) -> tuple[list[int], int]:
    """Class pixel counts and ignore count computed straight from the mask files."""
    counts = np.zeros(256, dtype=np.int64)
    for split in splits:
        for path in sorted((root / "masks" / split).glob("*.png")):
            counts += np.bincount(np.asarray(Image.open(path)).ravel(), minlength=256)
    return counts[: len(CLASSES)].tolist(), int(counts[255])


def test_clean_dataset_exits_0_with_a_frequency_table(tiny_root: Path, tmp_path: Path, capsys) -> None:
    cfg = write_config(tmp_path / "c.yaml", tiny_root, tmp_path / "run")
    assert main(["check-data", str(cfg)]) == 0
    captured = capsys.readouterr()
    assert "no bad files in 6 items" in captured.err
    out = captured.out
    assert "folder/train" in out and "folder/val" in out and "0 bad files" in out
    assert "label ids found on disk: 0 (background), 1 (red), 2 (blue), 255 (ignore)" in out
    pixels, ignore = expected_pixels(tiny_root, ("train",))
    train_table = out.split("folder/val")[0]
    for k, name in enumerate(CLASSES):
        share = 100 * pixels[k] / sum(pixels)
        row = next(line for line in train_table.splitlines() if line.split()[:2] == [str(k), name])
        assert f"{pixels[k]:,}" in row and f"{share:.2f}%" in row, row
    assert f"{ignore:,}" in next(
        line for line in train_table.splitlines() if line.split()[:2] == ["255", "ignore"]
    )


def damage(root: Path) -> dict[str, str]:
    """Four bad files of four kinds; returns path -> kind."""
    img = root / "images" / "train" / "001.png"
    img.write_bytes(img.read_bytes()[:200])  # truncated
    Image.fromarray(np.zeros((30, 32), dtype=np.uint8)).save(root / "masks" / "train" / "002.png")
    mask = np.array(Image.open(root / "masks" / "val" / "000.png"))
    mask[3, 3], mask[4, 4] = 7, 254
    Image.fromarray(mask).save(root / "masks" / "val" / "000.png")
    (root / "masks" / "val" / "001.png").write_bytes(b"not a png")
    return {
        str(img): "unreadable",
        str(root / "masks" / "train" / "002.png"): "size",
        str(root / "masks" / "val" / "000.png"): "ids",
        str(root / "masks" / "val" / "001.png"): "unreadable",
    }


def test_every_bad_file_is_collected_and_exit_is_1(tiny_root: Path, tmp_path: Path, capsys) -> None:
    bad = damage(tiny_root)
    cfg = write_config(tmp_path / "c.yaml", tiny_root, tmp_path / "run")
    report_file = tmp_path / "report.json"
    assert main(["check-data", str(cfg), "--json", str(report_file)]) == 1
    assert "4 bad files in 6 items" in capsys.readouterr().err
    report = json.loads(report_file.read_text())
    assert report["bad_files"] == 4
    found = {b["path"]: b["kind"] for split in report["splits"] for b in split["bad_files"]}
    assert found == bad
    val = next(s for s in report["splits"] if s["split"] == "val")
    assert val["label_ids"]["7"]["train_id"] == -1 and val["label_ids"]["254"]["pixels"] == 1
    problem = next(b["problem"] for b in val["bad_files"] if b["kind"] == "ids")
    assert "ids [7, 254] are not valid (3 classes" in problem
    assert main(["check-data", str(cfg), "--split", "val"]) == 1
    out = capsys.readouterr().out
    assert "folder/train" not in out and "[ids]" in out and "[unreadable]" in out
    assert "7 (INVALID), 254 (INVALID), 255 (ignore)" in out


def test_json_on_stdout_matches_the_files(tiny_root: Path, tmp_path: Path, capsys) -> None:
    cfg = write_config(tmp_path / "c.yaml", tiny_root, tmp_path / "run")
    assert main(["check-data", str(cfg), "--split", "train", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    (split,) = report["splits"]
    pixels, ignore = expected_pixels(tiny_root, ("train",))
    assert [c["pixels"] for c in split["classes"]] == pixels and split["ignore_pixels"] == ignore
    assert [c["name"] for c in split["classes"]] == list(CLASSES)
    assert sum(c["share"] for c in split["classes"]) == pytest.approx(1.0)
    assert all(c["images"] <= split["items"] == 4 for c in split["classes"])


def test_threaded_scan_equals_serial_scan(tiny_root: Path) -> None:
    damage(tiny_root)
    dataset = build_dataset("folder", tiny_root, "train")
    serial = scan_dataset(dataset, workers=0, progress=False)
    threaded = scan_dataset(dataset, workers=2, progress=False)
    assert serial.to_dict() == threaded.to_dict() and len(serial.bad) == 2


def test_layout_error_is_a_user_error(tmp_path: Path, capsys) -> None:
    cfg = write_config(tmp_path / "c.yaml", tmp_path / "missing", tmp_path / "run")
    assert main(["check-data", str(cfg)]) == 2
    err = capsys.readouterr().err
    assert "ladseg check-data: error: missing dataset root folder" in err and "Traceback" not in err


def palette_masks(root: Path, reorder: str | None = None) -> dict[Path, np.ndarray]:
    """Declare the class colours in palette.txt and save every mask as a palette image with them; the
    mask ``reorder`` is re-saved as an editor may: classes 1 and 2 swap indices and palette entries
    (it looks the same, but id 1 now means 'blue'). Returns each mask's class ids."""
    from tiny_data import COLORS

    (root / "palette.txt").write_text("\n".join(" ".join(map(str, c)) for c in COLORS) + "\n")
    truth = {}
    for path in sorted((root / "masks").glob("*/*.png")):
        truth[path] = ids = np.array(Image.open(path))
        colours = COLORS
        if path.relative_to(root / "masks").as_posix() == reorder:
            ids = np.where(ids == 1, 2, np.where(ids == 2, 1, ids)).astype(np.uint8)
            colours = COLORS[[0, 2, 1]]
        mask = Image.frombytes("P", (ids.shape[1], ids.shape[0]), ids.tobytes())
        mask.putpalette(
            colours.flatten().tolist() + [255] * (256 * 3 - colours.size)
        )  # 256 entries: 255 stays
        mask.save(path)
    return truth


def test_a_palette_mask_in_another_order_is_named(tiny_root: Path, tmp_path: Path, capsys) -> None:
    truth = palette_masks(tiny_root, reorder="val/001.png")
    bad = tiny_root / "masks" / "val" / "001.png"
    assert Image.open(bad).mode == "P"
    train = build_dataset("folder", tiny_root, "train")  # agreeing palette masks are read as their ids
    for i, sample in enumerate(train.samples):
        np.testing.assert_array_equal(train[i]["mask"], truth[sample.mask])
    val = build_dataset("folder", tiny_root, "val")
    val[0]
    with pytest.raises(DatasetError, match=rf"label {bad} is a palette image whose colours disagree .* id 1 is "
                       r"\(40, 40, 220\) in the file but \(220, 40, 40\) in palette\.txt \(and 1 more"):  # fmt: skip
        val[1]
    cfg = write_config(tmp_path / "c.yaml", tiny_root, tmp_path / "run")
    assert main(["check-data", str(cfg)]) == 1
    out = capsys.readouterr().out
    assert f"[palette] label {bad} is a palette image whose colours disagree" in out
    assert out.count("[palette]") == 1
    (tiny_root / "palette.txt").unlink()  # nothing declared: a palette mask is its index plane
    assert build_dataset("folder", tiny_root, "val")[1]["mask"].max() == 255
    assert main(["check-data", str(cfg)]) == 0

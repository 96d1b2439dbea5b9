import json
from pathlib import Path

import numpy as np
import pytest
import yaml
from PIL import Image
from tiny_data import tiny_config

from ladseg.cli import main


@pytest.fixture
def trained_run(tiny_root: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> tuple[Path, Path]:
    cfg_path = tmp_path / "tiny.yaml"
    cfg_path.write_text(yaml.safe_dump(tiny_config(tiny_root, tmp_path / "run").to_dict()))
    assert main(["train", str(cfg_path), "train.iters=2", "train.val_interval=2"]) == 0
    out = capsys.readouterr().out
    assert f"run folder: {tmp_path / 'run'}" in out and '"mIoU"' in out
    return cfg_path, tmp_path / "run"


def test_train_summary_is_printed_by_rank_zero_only(
    tiny_root: Path, tmp_path: Path, capsys: pytest.CaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Under torchrun every process runs the CLI; only rank 0 prints the final summary."""
    cfg_path = tmp_path / "tiny.yaml"
    cfg_path.write_text(yaml.safe_dump(tiny_config(tiny_root, tmp_path / "run").to_dict()))
    monkeypatch.setenv("RANK", "1")
    assert main(["train", str(cfg_path), "train.iters=1", "train.val_interval=1"]) == 0
    out = capsys.readouterr().out
    assert "run folder" not in out and '"mIoU"' not in out


def test_eval_prints_table_and_json(trained_run: tuple[Path, Path], tmp_path: Path, capsys) -> None:
    cfg_path, run = trained_run
    code = main(["eval", str(cfg_path), "--checkpoint", str(run / "best.pth"), "--mode", "multiscale",
                 "--scales", "0.75", "1.0", "--flip", "--json", str(tmp_path / "m.json")])  # fmt: skip
    assert code == 0
    out = capsys.readouterr().out
    assert "background" in out and "mIoU" in out and "+flip" in out
    metrics = json.loads((tmp_path / "m.json").read_text())
    assert set(metrics["IoU"]) == {"background", "red", "blue"} and 0 <= metrics["mIoU"] <= 100


def test_predict_writes_palette_masks_and_overlays(
    trained_run: tuple[Path, Path], tiny_root: Path, tmp_path: Path
) -> None:
    _, run = trained_run
    out_dir = tmp_path / "pred"
    images = tiny_root / "images" / "val"
    assert main(["predict", "--checkpoint", str(run / "best.pth"), "--input", str(images), "--output", str(out_dir),
                 "--mode", "slide", "--crop-size", "16", "16"]) == 0  # fmt: skip
    for stem in ("000", "001"):
        mask = Image.open(out_dir / f"{stem}.png")
        assert mask.mode == "P" and mask.size == (32, 32)
        assert set(np.unique(np.asarray(mask)).tolist()) <= {0, 1, 2}
        assert Image.open(out_dir / f"{stem}_overlay.jpg").size == (32, 32)


def test_user_errors_exit_2(tiny_root: Path, tmp_path: Path, capsys) -> None:
    cfg_path = tmp_path / "bad.yaml"
    cfg_path.write_text(yaml.safe_dump({"train": {"iters": 2, "typo": 1}}))
    assert main(["train", str(cfg_path)]) == 2
    assert "train.typo" in capsys.readouterr().err
    cfg_path.write_text(yaml.safe_dump({"train": {"iters": 2}}))
    assert main(["eval", str(cfg_path), "--checkpoint", str(tmp_path / "none.pth")]) == 2
    assert "checkpoint not found" in capsys.readouterr().err

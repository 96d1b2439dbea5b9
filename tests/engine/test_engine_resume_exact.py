"""Resume continues mid-epoch exactly; a fresh start in a used folder keeps the old log aside."""

from __future__ import annotations

from pathlib import Path

import torch
from tiny_data import make_folder_dataset, tiny_config

from ladseg.engine.logging import read_metrics
from ladseg.engine.trainer import Trainer, train


def _final_weights(work_dir: Path) -> dict[str, torch.Tensor]:
    return torch.load(work_dir / "last.pth", weights_only=True)["model"]


def test_a_run_stopped_mid_epoch_ends_with_the_weights_of_an_uninterrupted_run(tmp_path: Path) -> None:
    root = make_folder_dataset(tmp_path / "data", n_train=6)  # batch 2: 3 steps an epoch
    sections = {"train": {"iters": 7, "val_interval": 100, "log_interval": 1, "checkpoint_interval": 100}}
    train(tiny_config(root, tmp_path / "whole", **sections))
    first = Trainer(tiny_config(root, tmp_path / "split", **sections))
    first.fit(until=4)  # stops in the middle of the second epoch, after saving last.pth
    first.close()
    train(tiny_config(root, tmp_path / "split", **sections))
    whole, split = _final_weights(tmp_path / "whole"), _final_weights(tmp_path / "split")
    assert whole.keys() == split.keys()
    for key in whole:
        assert torch.equal(whole[key], split[key]), key
    losses = [r["loss"] for r in read_metrics(tmp_path / "split") if r["type"] == "train"]
    assert losses == [r["loss"] for r in read_metrics(tmp_path / "whole") if r["type"] == "train"]


def test_a_fresh_start_in_a_used_folder_keeps_the_old_log_aside(tmp_path: Path, capsys) -> None:
    root = make_folder_dataset(tmp_path / "data")
    run = tmp_path / "run"
    train(tiny_config(root, run))
    old = (run / "metrics.jsonl").read_text()
    train(tiny_config(root, run, train={"resume": False}))
    assert "fresh start" in capsys.readouterr().out
    assert (run / "metrics.previous-1.jsonl").read_text() == old
    iters = [r["iter"] for r in read_metrics(run) if r["type"] == "train"]
    assert iters == sorted(set(iters))  # one run's records, no duplicates
    # killed before its first checkpoint: the rerun starts fresh and says why
    (run / "last.pth").unlink()
    train(tiny_config(root, run))
    assert "no last.pth to resume from" in capsys.readouterr().out
    assert (run / "metrics.previous-2.jsonl").is_file()

"""DDP on CPU with gloo: two torchrun processes train, agree, and evaluate like one process."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml
from tiny_data import make_folder_dataset

from ladseg.data import build_loader
from ladseg.engine.builders import build_split
from ladseg.engine.checkpoint import build_model_from_checkpoint, load_checkpoint
from ladseg.engine.config import load_config
from ladseg.engine.dist import per_process_batch, shard_indices, world_size
from ladseg.engine.evaluation import evaluate
from ladseg.engine.logging import read_metrics
from ladseg.errors import ConfigError

TORCHRUN = Path(sys.executable).with_name("torchrun")


def write_config(tmp_path: Path, root: Path, **train: object) -> Path:
    raw = {
        "run": {"name": "ddp", "work_dir": str(tmp_path / "run"), "seed": 3, "device": "cpu"},
        "model": {"name": "fcn", "backbone": "resnet18", "head": {"channels": 16}},
        "data": {"dataset": "folder", "root": str(root), "crop_size": [32, 32], "scale_range": [0.75, 1.5],
                 "batch_size": 4, "num_workers": 0},
        "train": {"iters": 3, "val_interval": 3, "log_interval": 1, "checkpoint_interval": 3, **train},
        "eval": {"mode": "whole", "batch_size": 1},
    }  # fmt: skip
    path = tmp_path / "ddp.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path


@pytest.mark.skipif(not TORCHRUN.is_file(), reason="torchrun not installed next to the interpreter")
def test_two_gloo_processes_train_agree_and_shard_evaluation(tmp_path: Path) -> None:
    root = make_folder_dataset(tmp_path / "data", n_train=6, n_val=5)  # odd val count: unequal shards
    cfg_path = write_config(tmp_path, root)
    env = {**os.environ, "OMP_NUM_THREADS": "1", "OMP_WAIT_POLICY": "PASSIVE"}
    worker = Path(__file__).with_name("ddp_worker.py")
    proc = subprocess.run(
        [str(TORCHRUN), "--standalone", "--nproc_per_node=2", str(worker), str(cfg_path), str(tmp_path)],
        env=env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-4000:]
    r0, r1 = (torch.load(tmp_path / f"rank{r}.pt", weights_only=True) for r in (0, 1))
    assert r0["world"] == r1["world"] == 2 and r0["module"] == "DistributedDataParallel"
    assert r0["iteration"] == r1["iteration"] == 3
    # Identical weights and BN statistics on both ranks after training.
    assert r0["state"].keys() == r1["state"].keys()
    for key, value in r0["state"].items():
        torch.testing.assert_close(value, r1["state"][key], rtol=0, atol=0, msg=key)
    # Rank 0's checkpoint holds exactly the weights both ranks ended with.
    run = tmp_path / "run"
    saved = load_checkpoint(run / "last.pth")
    for key, value in saved["model"].items():
        torch.testing.assert_close(value, r0["state"][f"network.{key}"], rtol=0, atol=0, msg=key)
    # Rank 0 alone wrote the run folder: one record per interval, no duplicates.
    records = read_metrics(run)
    assert [r["iter"] for r in records if r["type"] == "train"] == [1, 2, 3]
    assert [r["iter"] for r in records if r["type"] == "val"] == [3]
    # Sharded evaluation (3 + 2 images, no padding) == single-process evaluation of the checkpoint.
    torch.testing.assert_close(r0["confusion"], r1["confusion"], rtol=0, atol=0)
    model, _ = build_model_from_checkpoint(run / "last.pth")
    cfg = load_config(cfg_path)
    val = build_split(cfg, "val", train=False)
    single = evaluate(model, build_loader(val, 1, False), 3, device="cpu", progress=False)
    assert int(single.confusion.sum()) == 5 * 31 * 32  # every labelled pixel of 5 images counted once
    torch.testing.assert_close(r0["confusion"], single.confusion, rtol=0, atol=0)
    val_record = next(r for r in records if r["type"] == "val")
    assert val_record["mIoU"] == pytest.approx(100 * single.miou, abs=1e-9)


@pytest.mark.skipif(not TORCHRUN.is_file(), reason="torchrun not installed next to the interpreter")
def test_a_compiled_student_under_ddp_trains_in_step_and_saves_eager_keys(tmp_path: Path) -> None:
    root = make_folder_dataset(tmp_path / "data", n_train=6, n_val=2)
    cfg_path = write_config(tmp_path, root, compile=True)
    env = {
        **os.environ,
        "OMP_NUM_THREADS": "1",
        "OMP_WAIT_POLICY": "PASSIVE",
        "LADSEG_COMPILE_BACKEND": "aot_eager",
    }  # dynamo + AOT autograd, no C++ generation
    worker = Path(__file__).with_name("ddp_worker.py")
    proc = subprocess.run(
        [str(TORCHRUN), "--standalone", "--nproc_per_node=2", str(worker), str(cfg_path), str(tmp_path)],
        env=env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-4000:]
    r0, r1 = (torch.load(tmp_path / f"rank{r}.pt", weights_only=True) for r in (0, 1))
    assert r0["module"] == "DistributedDataParallel" and r0["compile"] == r1["compile"] == "compiled"
    for key, value in r0["state"].items():
        torch.testing.assert_close(value, r1["state"][key], rtol=0, atol=0, msg=key)
    saved = load_checkpoint(tmp_path / "run" / "last.pth")
    assert not any("_orig_mod" in k for part in (saved["model"], saved["state"]["method"]) for k in part)
    build_model_from_checkpoint(tmp_path / "run" / "last.pth")  # loads strictly into an eager model


def test_shards_cover_every_item_once() -> None:
    for n in (0, 1, 5, 8):
        for world in (1, 2, 3):
            shards = [shard_indices(n, r, world) for r in range(world)]
            assert sorted(i for s in shards for i in s) == list(range(n))
            assert max(map(len, shards)) - min(map(len, shards)) <= 1
    assert world_size() == 1 and shard_indices(4) == [0, 1, 2, 3]  # no process group here


def test_global_batch_must_divide_over_processes() -> None:
    assert per_process_batch(16, 4) == 4 and per_process_batch(3, 1) == 3
    with pytest.raises(ConfigError, match=r"batch_size=6 .* divisible by the 4 processes"):
        per_process_batch(6, 4)

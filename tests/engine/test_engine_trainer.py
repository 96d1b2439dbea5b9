from pathlib import Path

import pytest
import torch
from tiny_data import tiny_config
from torch import nn

from ladseg.engine.builders import build_teacher, build_trained_network
from ladseg.engine.checkpoint import load_checkpoint, save_checkpoint
from ladseg.engine.config import load_config
from ladseg.engine.logging import read_metrics
from ladseg.engine.trainer import Trainer, train
from ladseg.errors import ConfigError, LadsegError
from ladseg.models import build_model


def test_tiny_training_writes_run_folder(tiny_root: Path, tmp_path: Path) -> None:
    cfg = tiny_config(tiny_root, tmp_path / "run")
    result = train(cfg)
    run = tmp_path / "run"
    assert result["iteration"] == 4 and 0.0 <= result["mIoU"] <= 100.0
    records = read_metrics(run)
    assert [r["iter"] for r in records if r["type"] == "train"] == [2, 4]
    train_rec = next(r for r in records if r["type"] == "train")
    assert {"lr", "loss", "ce", "aux_ce", "s_per_iter"} <= set(train_rec)
    val = [r for r in records if r["type"] == "val"]
    assert [r["iter"] for r in val] == [4] and set(val[0]["IoU"]) == {"background", "red", "blue"}
    last = load_checkpoint(run / "last.pth")
    assert last["state"]["iteration"] == 4 and last["meta"]["class_names"] == ["background", "red", "blue"]
    assert "state" not in load_checkpoint(run / "best.pth")
    assert (run / "last.pth.prev").is_file()  # the iteration-2 checkpoint
    assert load_config(run / "config.yaml").to_dict() == cfg.to_dict()


@pytest.mark.parametrize("amp", ["auto", "bf16"])  # auto: fp32 on the CPU; bf16: the opt-in
def test_resume_continues_the_same_run(tiny_root: Path, tmp_path: Path, amp: str) -> None:
    overrides = {
        "train": {"iters": 8, "val_interval": 4, "log_interval": 2, "checkpoint_interval": 100, "amp": amp}
    }
    straight = train(tiny_config(tiny_root, tmp_path / "a", **overrides))
    Trainer(tiny_config(tiny_root, tmp_path / "b", **overrides)).fit(until=4)
    assert load_checkpoint(tmp_path / "b" / "last.pth")["state"]["iteration"] == 4
    resumed = Trainer(tiny_config(tiny_root, tmp_path / "b", **overrides)).fit()
    assert resumed["iteration"] == 8
    wa = load_checkpoint(tmp_path / "a" / "last.pth")["model"]
    wb = load_checkpoint(tmp_path / "b" / "last.pth")["model"]
    for key in wa:
        torch.testing.assert_close(wa[key], wb[key], rtol=0, atol=0, msg=key)
    assert resumed["mIoU"] == straight["mIoU"]
    log_b = [r for r in read_metrics(tmp_path / "b") if r["type"] == "train"]
    assert [r["iter"] for r in log_b] == [2, 4, 6, 8]  # one history across both jobs


def test_same_seed_same_metrics(tiny_root: Path, tmp_path: Path) -> None:
    first = train(tiny_config(tiny_root, tmp_path / "x"))
    second = train(tiny_config(tiny_root, tmp_path / "y"))
    losses = [
        [r["loss"] for r in read_metrics(d) if r["type"] == "train"] for d in (tmp_path / "x", tmp_path / "y")
    ]
    assert losses[0] == losses[1]
    assert first["mIoU"] == second["mIoU"]


@pytest.mark.parametrize("amp", ["auto", "bf16"])
def test_loss_goes_down_on_a_fixed_batch(tiny_root: Path, tmp_path: Path, amp: str) -> None:
    trainer = Trainer(tiny_config(tiny_root, tmp_path / "r", train={"iters": 100, "amp": amp}))
    batch = next(trainer.training_batches())
    losses = [trainer.train_step(batch)["loss"].item() for _ in range(20)]
    assert losses[-1] < 0.5 * losses[0], losses


def test_non_finite_loss_stops_with_iteration_and_terms(tiny_root: Path, tmp_path: Path) -> None:
    class Exploding(nn.Module):
        def forward(self, batch: dict) -> dict:
            return {"loss": torch.tensor(float("nan")), "ce": torch.tensor(1.5)}

    trainer = Trainer(tiny_config(tiny_root, tmp_path / "r"))
    trainer.module = Exploding()
    with pytest.raises(LadsegError, match=r"iteration 1: \{'loss': nan, 'ce': 1.5\}"):
        trainer.fit()


def test_init_checkpoint_and_teacher_checks(tiny_root: Path, tmp_path: Path) -> None:
    other = build_model("fcn", "resnet18", 3, head={"channels": 16})
    save_checkpoint(tmp_path / "init.pth", {"model": other.state_dict(), "meta": {"spec": other.spec}})
    cfg = tiny_config(tiny_root, tmp_path / "r", train={"init_checkpoint": str(tmp_path / "init.pth")})
    student = build_trained_network(cfg, 3)
    for key, value in other.state_dict().items():
        assert torch.equal(student.state_dict()[key], value)
    five = build_model("fcn", "resnet18", 5, head={"channels": 16})
    save_checkpoint(tmp_path / "t5.pth", {"model": five.state_dict(), "meta": {"spec": five.spec}})
    cfg = tiny_config(tiny_root, tmp_path / "r", teacher={"checkpoint": str(tmp_path / "t5.pth")})
    with pytest.raises(ConfigError, match="5 classes but the student has 3"):
        build_teacher(cfg, 3)
    with pytest.raises(ConfigError, match="teacher.checkpoint"):
        build_teacher(tiny_config(tiny_root, tmp_path / "r"), 3)

"""Out-of-memory becomes a hint about batch and crop size; a non-finite loss keeps the last good checkpoint."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from reliability_helpers import save_model_checkpoint, write_config

import ladseg.engine.evaluation
from ladseg.cli import main
from ladseg.engine.checkpoint import load_checkpoint
from ladseg.engine.trainer import Trainer
from ladseg.methods import METHODS

OOM_ERRORS = {
    "cuda": lambda: torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 20.00 GiB"),
    "cpu": lambda: RuntimeError(
        "[enforce fail at alloc_cpu.cpp:117] data. DefaultCPUAllocator: can't allocate memory: "
        "you tried to allocate 21474836480 bytes. Error code 12 (Cannot allocate memory)"
    ),
}


def raiser(error):
    def fail(*args, **kwargs):
        raise error

    return fail


@pytest.mark.parametrize("kind", sorted(OOM_ERRORS))
def test_out_of_memory_in_training_hints_at_batch_and_crop(
    kind: str, tiny_root: Path, tmp_path: Path, capsys, monkeypatch
) -> None:
    monkeypatch.setattr(Trainer, "train_step", raiser(OOM_ERRORS[kind]()))
    cfg = write_config(tmp_path / "c.yaml", tiny_root, tmp_path / "run")
    assert main(["train", str(cfg), "data.crop_size=[64,64]"]) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err
    message = err[err.index("ladseg train: error: ") :].strip()
    assert message.startswith("ladseg train: error: out of memory during training (")
    assert "data.batch_size=2 and data.crop_size=[64, 64]" in message
    assert "data.batch_size=1" in message and "data.crop_size=[32,32]" in message


def test_out_of_memory_in_eval_hints_at_batch_and_window(
    tiny_root: Path, tmp_path: Path, capsys, monkeypatch
) -> None:
    ckpt = save_model_checkpoint(tmp_path / "m.pth")
    monkeypatch.setattr(ladseg.engine.evaluation, "evaluate", raiser(OOM_ERRORS["cuda"]()))
    cfg = write_config(tmp_path / "c.yaml", tiny_root, tmp_path / "run")
    assert main(["eval", str(cfg), "--checkpoint", str(ckpt)]) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err
    assert "ladseg eval: error: out of memory during evaluation (CUDA out of memory." in err
    assert "eval.batch_size=1" in err and "--mode slide --crop-size H W" in err and "data.crop_size" in err


def test_other_runtime_errors_are_not_disguised(tiny_root: Path, tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setattr(Trainer, "train_step", raiser(RuntimeError("a real bug")))
    cfg = write_config(tmp_path / "c.yaml", tiny_root, tmp_path / "run")
    with pytest.raises(RuntimeError, match="a real bug"):
        main(["train", str(cfg)])


def test_non_finite_loss_stops_and_keeps_the_last_good_checkpoint(
    tiny_root: Path, tmp_path: Path, capsys, monkeypatch
) -> None:
    """Iteration 5's loss is NaN: the run stops naming it and its terms; last.pth is iteration 4's."""
    method_cls = METHODS.get("supervised")
    forward = method_cls.forward
    calls = {"n": 0}

    def poisoned(self, batch):
        terms = forward(self, batch)
        calls["n"] += 1
        if calls["n"] == 5:
            terms = {**terms, "loss": terms["loss"] * float("nan"), "ce": terms["ce"] * float("inf")}
        return terms

    monkeypatch.setattr(method_cls, "forward", poisoned)
    run = tmp_path / "run"
    cfg = write_config(tmp_path / "c.yaml", tiny_root, run,
                       train={"iters": 8, "checkpoint_interval": 2, "log_interval": 2})  # fmt: skip
    assert main(["train", str(cfg)]) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err
    message = err[err.index("ladseg train: error: ") :]
    assert "non-finite loss at iteration 5: {'loss': nan, 'ce': inf, 'aux_ce': " in message
    assert f"the last good checkpoint is {run / 'last.pth'}" in message
    last = load_checkpoint(run / "last.pth")
    assert last["state"]["iteration"] == 4 and last["meta"]["iteration"] == 4
    assert all(torch.isfinite(v).all() for v in last["model"].values() if v.is_floating_point())
    assert load_checkpoint(run / "last.pth.prev")["state"]["iteration"] == 2

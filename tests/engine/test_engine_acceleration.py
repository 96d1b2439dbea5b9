"""Speed settings change seconds per step, never what is trained or saved.

Compiled runs use dynamo's ``aot_eager`` backend (``LADSEG_COMPILE_BACKEND``): the same tracing,
in-place module compile and AOT autograd as inductor, without generating C++ (minutes on 2 cores).
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from tiny_data import make_folder_dataset, tiny_config

from ladseg.data.loader import EpochShuffle
from ladseg.engine import acceleration as accel
from ladseg.engine import trainer as trainer_module
from ladseg.engine.checkpoint import build_model_from_checkpoint, load_checkpoint
from ladseg.engine.trainer import Trainer, train
from ladseg.errors import ConfigError
from ladseg.methods import build_method
from ladseg.models import build_model

CPU = torch.device("cpu")


def test_cpu_defaults_and_the_compile_payoff_rule(monkeypatch: pytest.MonkeyPatch) -> None:
    assert accel.use_channels_last("auto", CPU) and accel.use_channels_last(True, CPU)
    assert not accel.use_channels_last(False, CPU) and not accel.use_channels_last("false", CPU)
    with pytest.raises(ConfigError, match="train.channels_last"):
        accel.use_channels_last("sometimes", CPU)
    monkeypatch.delenv(accel.BACKEND_ENV, raising=False)
    monkeypatch.setattr(accel.shutil, "which", lambda name: f"/usr/bin/{name}")
    cuda = torch.device("cuda")
    monkeypatch.setattr(accel.importlib.util, "find_spec", lambda name: object())  # "Triton is installed"
    assert accel.compile_decision("auto", accel.COMPILE_PAYS_AFTER - 1, cuda) == (False, None)
    assert accel.compile_decision("auto", accel.COMPILE_PAYS_AFTER, cuda) == (True, None)
    assert accel.compile_decision("auto", 10**9, CPU) == (False, None)  # measured: no gain on the CPU
    assert accel.compile_decision(True, 1, CPU) == (True, None)
    assert accel.compile_decision(False, 10**6, CPU) == (False, None)
    monkeypatch.setattr(accel.shutil, "which", lambda name: None)
    compile_it, note = accel.compile_decision(True, 10**6, CPU)
    assert not compile_it and note is not None and "no C++ compiler" in note and "eager" in note


def test_threads_and_workers_share_the_cores_between_local_processes(monkeypatch: pytest.MonkeyPatch) -> None:
    assert accel.plan_threads(cores=16, processes=4) == 4 and accel.plan_threads(cores=2, processes=4) == 1
    assert (
        accel.plan_workers(4, cores=2, processes=1) == 2 and accel.plan_workers(0, cores=16, processes=1) == 0
    )
    assert accel.plan_workers(8, cores=16, processes=2) == 8
    before = torch.get_num_threads()
    try:
        monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
        monkeypatch.setattr(accel, "available_cores", lambda: 4)
        monkeypatch.setenv("LOCAL_WORLD_SIZE", "2")
        torch.set_num_threads(4)
        assert accel.set_threads(CPU) == 2  # two processes on four cores: two threads each
        torch.set_num_threads(1)
        assert accel.set_threads(CPU) == 1  # never raised above what the caller chose
        monkeypatch.setenv("OMP_NUM_THREADS", "3")
        torch.set_num_threads(3)
        assert accel.set_threads(CPU) == 3  # an explicit OMP_NUM_THREADS is left alone
    finally:
        torch.set_num_threads(before)


def test_channels_last_outputs_equal_nchw_outputs() -> None:
    torch.manual_seed(0)
    nchw = build_model("deeplabv3", "resnet18", 5).eval()
    cl = build_model("deeplabv3", "resnet18", 5).eval()
    cl.load_state_dict(nchw.state_dict())
    accel.prepare_method(build_method("supervised", {}, cl, 5), channels_last=True)
    assert cl.backbone.first_conv.weight.is_contiguous(memory_format=torch.channels_last)
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        a = nchw(x).logits
        b = cl(x.contiguous(memory_format=torch.channels_last)).logits
    torch.testing.assert_close(b, a, rtol=1e-4, atol=1e-4)


def test_the_frozen_teacher_runs_in_inference_mode_and_its_outputs_feed_autograd() -> None:
    torch.manual_seed(0)
    teacher = build_model("fcn", "resnet18", 3, head={"channels": 16}).eval()
    for p in teacher.parameters():
        p.requires_grad_(False)
    x = torch.randn(1, 3, 32, 32)
    with torch.no_grad():
        expected = teacher(x).logits
    seen: list[bool] = []
    teacher.decode_head.register_forward_hook(lambda m, i, o: seen.append(torch.is_inference_mode_enabled()))
    accel.frozen_forward(teacher)
    out = teacher(x)
    assert seen == [True] and not out.logits.is_inference()
    assert all(not f.is_inference() for f in out.features)
    torch.testing.assert_close(out.logits, expected, rtol=0, atol=0)
    w = torch.ones(1, requires_grad=True)
    (w * out.logits).sum().backward()  # mul saves the teacher's output for backward
    assert w.grad is not None and "_orig_mod" not in "".join(teacher.state_dict())


def test_a_failed_compile_falls_back_to_eager_with_one_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    def unsupported(gm: torch.fx.GraphModule, example_inputs: list) -> None:
        raise NotImplementedError("aten::imaginary_op has no kernel")

    root = make_folder_dataset(tmp_path / "data")
    monkeypatch.setattr(accel, "compile_options", lambda: {"backend": unsupported})
    train(tiny_config(root, tmp_path / "compiled", train={"compile": True}))
    lines = [line for line in capsys.readouterr().out.splitlines() if "train.compile" in line]
    assert len(lines) == 1 and "compiling failed" in lines[0] and "running eagerly" in lines[0]
    train(tiny_config(root, tmp_path / "eager", train={"compile": False}))
    a = load_checkpoint(tmp_path / "compiled" / "last.pth")["model"]
    b = load_checkpoint(tmp_path / "eager" / "last.pth")["model"]
    for key in b:  # the failed step was rerun from the same RNG state and BN buffers
        assert torch.equal(a[key], b[key]), key


def test_no_compiler_is_one_line_and_an_eager_run(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delenv(accel.BACKEND_ENV, raising=False)
    monkeypatch.setattr(accel.shutil, "which", lambda name: None)
    trainer = Trainer(
        tiny_config(make_folder_dataset(tmp_path / "data"), tmp_path / "run", train={"compile": True})
    )
    trainer.fit()
    out = [line for line in capsys.readouterr().out.splitlines() if "train.compile" in line]
    assert out == ["train.compile: no C++ compiler found (g++, c++, clang++); running eagerly"]
    assert trainer.steps.mode == "eager"


def test_the_training_loader_is_built_once_and_reshuffles_each_epoch(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    built: list[int] = []
    original = trainer_module.build_loader_for

    def counting(*args, **kwargs):
        loader = original(*args, **kwargs)
        if kwargs.get("train"):
            built.append(id(loader))
        return loader

    monkeypatch.setattr(trainer_module, "build_loader_for", counting)
    root = make_folder_dataset(tmp_path / "data", n_train=6)  # batch 2: 3 steps an epoch
    cfg = tiny_config(
        root, tmp_path / "run", train={"iters": 9, "val_interval": 100, "checkpoint_interval": 100}
    )
    trainer = Trainer(cfg)
    batches = trainer.training_batches()
    names = [name for _ in range(9) for name in next(batches)["name"]]
    assert len(built) == 1  # three epochs, one loader
    epochs = [names[0:6], names[6:12], names[12:18]]
    assert all(sorted(e) == sorted(epochs[0]) for e in epochs) and epochs[0] != epochs[1]
    files = sorted(epochs[0])
    for e, order in enumerate(epochs):  # epoch e is drawn from seed + e
        assert order == [files[i] for i in EpochShuffle(6, cfg.run.seed + e)]
    trainer.close()


def test_a_compiled_run_saves_eager_checkpoints_and_resumes_exactly(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(accel.BACKEND_ENV, "aot_eager")
    root = make_folder_dataset(tmp_path / "data", n_train=6)
    sections = {"train": {"iters": 4, "val_interval": 4, "log_interval": 1, "checkpoint_interval": 100,
                          "compile": True, "ema_decay": 0.9}}  # fmt: skip
    train(tiny_config(root, tmp_path / "whole", **sections))
    first = Trainer(tiny_config(root, tmp_path / "split", **sections))
    first.fit(until=2)
    assert first.steps.mode == "compiled"
    first.close()
    train(tiny_config(root, tmp_path / "split", **sections))
    whole = load_checkpoint(tmp_path / "whole" / "last.pth")
    split = load_checkpoint(tmp_path / "split" / "last.pth")
    for part in (whole["model"], whole["state"]["method"], whole["state"]["ema"]["shadow"]):
        assert not any("_orig_mod" in key for key in part)
    for key, value in whole["model"].items():
        assert torch.equal(value, split["model"][key]), key
    eager_model, _ = build_model_from_checkpoint(tmp_path / "whole" / "best.pth")  # strict load
    assert not hasattr(eager_model, "_compiled_call_impl") or eager_model._compiled_call_impl is None

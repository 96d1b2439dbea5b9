import pytest
import torch

from ladseg.engine.amp import build_amp
from ladseg.engine.builders import build_optimizer
from ladseg.engine.config import config_from_dict
from ladseg.engine.schedule import PolySchedule
from ladseg.errors import ConfigError
from ladseg.methods import build_method
from ladseg.methods.base import Method
from ladseg.models import build_model


def test_poly_with_linear_warmup_and_head_multiplier() -> None:
    def M() -> Method:  # noqa: N802 (a method factory in the place of the old stand-in class)
        return build_method("supervised", {}, build_model("fcn", "resnet18", 3, head={"channels": 8}), 3)

    cfg = config_from_dict(
        {"optim": {"lr": 0.1, "head_lr_mult": 10.0, "warmup_iters": 10, "warmup_ratio": 0.1}}
    )
    opt = build_optimizer(M(), cfg)
    backbone, head = opt.param_groups
    assert len(backbone["params"]) + len(head["params"]) == len(list(M().parameters()))
    sched = PolySchedule(opt, max_iters=100, power=0.9, warmup_iters=10, warmup_ratio=0.1)
    assert backbone["lr"] == pytest.approx(0.1 * 0.1) and head["lr"] == pytest.approx(1.0 * 0.1)
    sched.step(5)
    assert backbone["lr"] == pytest.approx(0.1 * (1 - 5 / 100) ** 0.9 * (0.1 + 0.9 * 0.5))
    sched.step(50)
    assert backbone["lr"] == pytest.approx(0.1 * 0.5**0.9) and head["lr"] == pytest.approx(
        10 * backbone["lr"]
    )
    sched.step(100)
    assert backbone["lr"] == 0.0
    restored = PolySchedule(opt, 100, 0.9, 10, 0.1)
    restored.load_state_dict({"iteration": 50})
    assert backbone["lr"] == pytest.approx(0.1 * 0.5**0.9)


def test_optimizer_is_chosen_by_name_with_the_same_param_groups() -> None:
    def M() -> Method:  # noqa: N802 (a method factory in the place of the old stand-in class)
        return build_method("supervised", {}, build_model("fcn", "resnet18", 3, head={"channels": 8}), 3)

    cfg = config_from_dict(
        {"optim": {"name": "adamw", "lr": 0.003, "head_lr_mult": 2.0, "weight_decay": 0.01}}
    )
    opt = build_optimizer(M(), cfg)
    assert isinstance(opt, torch.optim.AdamW)
    assert [g["lr"] for g in opt.param_groups] == pytest.approx([0.003, 0.006])
    assert opt.param_groups[0]["weight_decay"] == 0.01
    assert isinstance(build_optimizer(M(), config_from_dict({})), torch.optim.SGD)  # the default
    with pytest.raises(ConfigError, match=r"optim\.name.*adamw"):
        build_optimizer(M(), config_from_dict({"optim": {"name": "lion"}}))


def test_amp_choices_on_cpu(monkeypatch: pytest.MonkeyPatch) -> None:
    from ladseg.engine import amp

    cpu = torch.device("cpu")
    for native in (False, True):  # fp32 by default on any CPU: bf16 cost ~1 mIoU on CamVid (docs/bench.md)
        monkeypatch.setattr(amp, "cpu_has_native_bf16", lambda native=native: native)
        assert build_amp("auto", cpu).dtype is None and amp.amp_note("auto", cpu) is None
        note = amp.amp_note("bf16", cpu)  # emulated bf16 is slower than fp32: said in one line
        assert note is None if native else "no bf16 units" in note
    assert build_amp("none", cpu).dtype is None
    assert build_amp("bf16", cpu).dtype is torch.bfloat16 and not build_amp("bf16", cpu).scaler.is_enabled()
    with pytest.raises(ConfigError, match="fp16 needs a CUDA"):
        build_amp("fp16", cpu)
    with build_amp("bf16", cpu).autocast():
        assert (torch.ones(2, 2) @ torch.ones(2, 2)).dtype is torch.bfloat16

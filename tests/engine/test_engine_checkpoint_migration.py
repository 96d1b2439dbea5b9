"""Resume checkpoints of earlier versions, whose method state named the config's network ``student`` and
distillation's built losses ``kd_losses``, resume exactly: the old names are migrated where the method
state is loaded (Trainer.resume)."""

from __future__ import annotations

from collections import OrderedDict
from pathlib import Path
from typing import Any

import torch
from tiny_data import make_folder_dataset, tiny_config

from ladseg.engine.checkpoint import build_model_from_checkpoint, load_checkpoint, migrate_resume_state
from ladseg.engine.trainer import Trainer, train
from ladseg.models import build_model

#: current module name -> the name earlier versions saved (written out here, not read from the migration)
OLD_NAMES = {"network": "student", "loss_modules": "kd_losses"}


def _old_name(name: str) -> str:
    for new, old in OLD_NAMES.items():
        if name == new or name.startswith(new + "."):
            return old + name[len(new) :]
    return name


def _age(path: Path) -> dict[str, Any]:
    """Rewrite a resume checkpoint as an earlier ladseg saved it (old module names); returns its state."""
    payload = torch.load(path, weights_only=True)
    state = payload["state"]
    method = state["method"]
    aged = OrderedDict((_old_name(k), v) for k, v in method.items())
    aged._metadata = OrderedDict((_old_name(k), v) for k, v in method._metadata.items())  # type: ignore[attr-defined]
    state["method"] = aged
    state["separate_optimizers"] = {_old_name(k): v for k, v in state["separate_optimizers"].items()}
    torch.save(payload, path)
    return state


def _whole_run_and_an_aged_stop(root: Path, tmp_path: Path, sections: dict[str, Any]) -> dict[str, Any]:
    """An uninterrupted run in ``whole``; a run stopped at iteration 2 in ``old``, its last.pth rewritten
    with the old names (returned state)."""
    train(tiny_config(root, tmp_path / "whole", **sections))
    first = Trainer(tiny_config(root, tmp_path / "old", **sections))
    first.fit(until=2)
    first.close()
    return _age(tmp_path / "old" / "last.pth")


def _same_network(a: Path, b: Path) -> None:
    """Both runs' last.pth: identical logits of the saved network, identical method state (raw weights,
    buffers, loss modules) and separate optimisers."""
    (ma, _), (mb, _) = (
        build_model_from_checkpoint(a / "last.pth"),
        build_model_from_checkpoint(b / "last.pth"),
    )
    x = torch.randn(2, ma.in_channels, 32, 32, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        assert torch.equal(ma(x).logits, mb(x).logits)
    sa, sb = load_checkpoint(a / "last.pth")["state"], load_checkpoint(b / "last.pth")["state"]
    assert sa["method"].keys() == sb["method"].keys()
    for key, value in sa["method"].items():
        assert torch.equal(value, sb["method"][key]), key
    assert sa["separate_optimizers"].keys() == sb["separate_optimizers"].keys()
    for name, opt in sa["separate_optimizers"].items():
        for i, moments in opt["state"].items():
            for key, value in moments.items():
                assert torch.equal(value, sb["separate_optimizers"][name]["state"][i][key]), (name, key)


def test_the_migration_renames_old_keys_and_leaves_current_ones() -> None:
    method = OrderedDict([("student.head.w", torch.ones(1)), ("tokens", torch.zeros(2))])
    method._metadata = OrderedDict([("", {"version": 1}), ("student", {}), ("student.head", {"version": 2})])  # type: ignore[attr-defined]
    state = {"method": method, "separate_optimizers": {"student.d": {"state": {}}}, "iteration": 3}
    migrated = migrate_resume_state(state)
    assert list(migrated["method"]) == ["network.head.w", "tokens"]
    assert list(migrated["method"]._metadata) == ["", "network", "network.head"]
    assert migrated["method"]._metadata["network.head"] == {"version": 2}  # BatchNorm reads its version
    assert list(migrated["separate_optimizers"]) == ["network.d"] and migrated["iteration"] == 3
    assert list(state["method"]) == ["student.head.w", "tokens"]  # the loaded payload is not changed
    again = migrate_resume_state(migrated)
    assert list(again["method"]) == list(migrated["method"])


def test_a_lad_teacher_saved_with_the_old_names_resumes_exactly(tmp_path: Path) -> None:
    """The LAD teacher is where ``student`` misled: its checkpoint of the old layout resumes to the
    weights and logits of an uninterrupted run."""
    root = make_folder_dataset(tmp_path / "data", n_train=6)
    sections: dict[str, Any] = {
        "model": {"in_channels": 7},
        "method": {"name": "lad_teacher", "encoder": {"kind": "onehot"}},
        "train": {"iters": 4, "val_interval": 100, "log_interval": 1, "checkpoint_interval": 100},
    }
    aged = _whole_run_and_an_aged_stop(root, tmp_path, sections)
    assert any(k.startswith("student.") for k in aged["method"])
    assert not any(k.startswith("network.") for k in aged["method"])
    train(tiny_config(root, tmp_path / "old", **sections))
    assert load_checkpoint(tmp_path / "old" / "last.pth")["meta"]["iteration"] == 4
    _same_network(tmp_path / "whole", tmp_path / "old")


def test_a_distillation_saved_with_the_old_names_resumes_exactly(tmp_path: Path) -> None:
    """Loss modules with state (the adversarial discriminator and its own Adam, a FitNets adapter with
    BatchNorm statistics) come back under their new names: the resumed run ends where an uninterrupted one does."""
    root = make_folder_dataset(tmp_path / "data", n_train=6)
    teacher = build_model("fcn", "resnet18", 3, head={"channels": 16})
    meta = {"spec": teacher.spec, "normalize": "imagenet", "config": None, "class_names": None}
    torch.save({"model": teacher.state_dict(), "meta": meta}, tmp_path / "teacher.pth")
    losses = [
        {"name": "kd"},
        {"name": "adversarial", "disc_width": 8},
        {"name": "fitnets", "adapter": True, "bn": True},
    ]
    sections: dict[str, Any] = {
        "method": {"name": "distill", "aux_weight": 0.4, "kd_losses": losses},
        "teacher": {"checkpoint": str(tmp_path / "teacher.pth")},
        "train": {"iters": 4, "val_interval": 100, "log_interval": 1, "checkpoint_interval": 100},
    }
    aged = _whole_run_and_an_aged_stop(root, tmp_path, sections)
    assert (
        "kd_losses.2.adapter.1.running_mean" in aged["method"]
        and "kd_losses.2.adapter.1" in aged["method"]._metadata
    )
    assert list(aged["separate_optimizers"]) == ["kd_losses.1"]
    train(tiny_config(root, tmp_path / "old", **sections))
    _same_network(tmp_path / "whole", tmp_path / "old")

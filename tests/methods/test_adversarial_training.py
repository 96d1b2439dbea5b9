"""The adversarial loss's discriminator trains with its own Adam after the engine's step, resumes exactly,
and never reaches the engine's optimiser or the exported model."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import torch
import yaml
from tiny_data import make_folder_dataset, tiny_config

from ladseg.engine.checkpoint import save_checkpoint
from ladseg.engine.config import config_from_dict
from ladseg.engine.trainer import Trainer, train
from ladseg.errors import ConfigError
from ladseg.losses.adversarial import AdversarialLoss
from ladseg.models import build_model

ADV = {"name": "adversarial", "disc_width": 8}


def _teacher(path: Path) -> Path:
    model = build_model("fcn", "resnet18", 3, head={"channels": 16})
    meta = {"spec": model.spec, "normalize": "imagenet", "config": None, "class_names": None}
    return save_checkpoint(path, {"model": model.state_dict(), "meta": meta})


def _sections(tmp_path: Path, **train_keys: Any) -> dict[str, Any]:
    teacher = tmp_path / "teacher.pth"
    if not teacher.is_file():
        _teacher(teacher)
    return {
        "method": {"name": "distill", "aux_weight": 0.4, "kd_losses": [{"name": "kd"}, ADV]},
        "teacher": {"checkpoint": str(teacher)},
        "train": {"val_interval": 100, "log_interval": 1, "checkpoint_interval": 100, **train_keys},
    }


def _adv(trainer: Trainer) -> AdversarialLoss:
    (loss,) = [m for m in trainer.method.loss_modules if isinstance(m, AdversarialLoss)]
    return loss


def test_the_engine_optimiser_leaves_the_discriminator_out(tmp_path: Path, tiny_root: Path) -> None:
    trainer = Trainer(tiny_config(tiny_root, tmp_path / "run", **_sections(tmp_path)))
    try:
        d_ids = {id(p) for p in _adv(trainer).discriminator.parameters()}
        main_ids = {id(p) for g in trainer.optimizer.param_groups for p in g["params"]}
        assert d_ids and not d_ids & main_ids
        trainable = {id(p) for p in trainer.method.parameters() if p.requires_grad}
        assert trainable == main_ids | d_ids
    finally:
        trainer.close()


def test_one_step_trains_the_discriminator_and_the_student(tmp_path: Path, tiny_root: Path) -> None:
    trainer = Trainer(tiny_config(tiny_root, tmp_path / "run", **_sections(tmp_path)))
    try:
        adv = _adv(trainer)
        before = {k: v.clone() for k, v in adv.discriminator.state_dict().items()}
        batch = next(trainer.training_batches())
        terms = trainer.train_step(batch)
        assert "kd_adversarial" in terms and "kd_adversarial_d" in terms
        after = adv.discriminator.state_dict()
        changed = [k for k in before if not torch.equal(before[k], after[k])]
        assert "convs.0.weight" in changed and "last.weight" in changed and "convs.0.u" in changed
        assert int(adv.optimizer().state_dict()["state"][0]["step"]) == 1
        # the generator term's gradient reaches the student
        method = trainer.method
        student = method.network
        student.zero_grad(set_to_none=True)
        image = batch["image"]
        with torch.no_grad():
            t = method.teacher(image)
        s = student(image)
        adv(s, t, batch["mask"]).backward()
        assert student.backbone.first_conv.weight.grad.abs().sum() > 0
    finally:
        trainer.close()


def test_resume_is_exact_and_the_exported_model_has_no_discriminator(tmp_path: Path) -> None:
    root = make_folder_dataset(tmp_path / "data", n_train=6)
    sections = _sections(tmp_path, iters=5)
    train(tiny_config(root, tmp_path / "whole", **sections))
    first = Trainer(tiny_config(root, tmp_path / "split", **sections))
    first.fit(until=2)
    first.close()
    train(tiny_config(root, tmp_path / "split", **sections))
    whole = torch.load(tmp_path / "whole" / "last.pth", weights_only=True)
    split = torch.load(tmp_path / "split" / "last.pth", weights_only=True)
    assert not any("discriminator" in k for k in whole["model"])
    for part in ("model",):
        for key in whole[part]:
            assert torch.equal(whole[part][key], split[part][key]), key
    w_state, s_state = whole["state"]["method"], split["state"]["method"]
    d_keys = [k for k in w_state if "discriminator" in k]
    assert d_keys
    for key in d_keys:
        assert torch.equal(w_state[key], s_state[key]), key
    w_opt = whole["state"]["separate_optimizers"]["loss_modules.1"]["state"]
    s_opt = split["state"]["separate_optimizers"]["loss_modules.1"]["state"]
    assert int(w_opt[0]["step"]) == 5 and w_opt.keys() == s_opt.keys()
    for i in w_opt:
        for name in ("exp_avg", "exp_avg_sq"):
            assert torch.equal(w_opt[i][name], s_opt[i][name])


def test_a_typo_in_the_loss_section_names_the_key(tmp_path: Path, tiny_root: Path) -> None:
    raw = _sections(tmp_path)
    raw["method"]["kd_losses"] = [{"name": "adversarial", "d_wieght": 0.1}]
    with pytest.raises(ConfigError, match=r"method\.kd_losses\[0\].*d_wieght"):
        config_from_dict({**tiny_config(tiny_root, tmp_path / "r").to_dict(), **raw})


TORCHRUN = Path(sys.executable).with_name("torchrun")


@pytest.mark.skipif(not TORCHRUN.is_file(), reason="torchrun not installed next to the interpreter")
def test_two_gloo_processes_keep_the_discriminator_in_step(tmp_path: Path) -> None:
    root = make_folder_dataset(tmp_path / "data", n_train=6, n_val=2)
    cfg = tiny_config(root, tmp_path / "run", **_sections(tmp_path, iters=3))
    raw = cfg.to_dict()
    raw["data"]["batch_size"] = 4
    raw["data"]["scale_range"] = [0.75, 1.5]  # different crops on the two ranks
    cfg_path = tmp_path / "ddp.yaml"
    cfg_path.write_text(yaml.safe_dump(raw))
    env = {**os.environ, "OMP_NUM_THREADS": "1", "OMP_WAIT_POLICY": "PASSIVE"}
    worker = Path(__file__).parents[1] / "distributed" / "ddp_worker.py"
    proc = subprocess.run(
        [str(TORCHRUN), "--standalone", "--nproc_per_node=2", str(worker), str(cfg_path), str(tmp_path)],
        env=env, capture_output=True, text=True, timeout=180,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-4000:]
    r0, r1 = (torch.load(tmp_path / f"rank{r}.pt", weights_only=True) for r in (0, 1))
    assert r0["module"] == "DistributedDataParallel"
    d_keys = [k for k in r0["state"] if "discriminator" in k]
    assert d_keys
    for key in r0["state"]:
        torch.testing.assert_close(r0["state"][key], r1["state"][key], rtol=0, atol=0, msg=key)

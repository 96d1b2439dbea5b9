"""The weight average (train.ema_decay): the arithmetic, the swap, and the trainer's use of it."""

from pathlib import Path

import pytest
import torch
from tiny_data import tiny_config
from torch import nn

from ladseg.engine.checkpoint import load_checkpoint
from ladseg.engine.ema import WeightAverage
from ladseg.engine.trainer import Trainer, train
from ladseg.errors import ConfigError


def _net() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4))


def test_average_follows_the_formula_with_the_warm_up_cap() -> None:
    net = _net()
    ema = WeightAverage(net, decay=0.9)
    w0 = net[0].weight.detach().clone()
    with torch.no_grad():
        net[0].weight.add_(1.0)
        net[1].num_batches_tracked.fill_(7)
    ema.update(net)  # first update: decay capped at (1 + 1) / (10 + 1)
    d = 2 / 11
    shadow = ema.state_dict()["shadow"]
    torch.testing.assert_close(shadow["0.weight"], d * w0 + (1 - d) * (w0 + 1))
    assert int(shadow["1.num_batches_tracked"]) == 7  # integer buffers are copied, not averaged
    for _ in range(200):
        ema.update(net)
    assert ema.current_decay() == 0.9
    torch.testing.assert_close(ema.state_dict()["shadow"]["0.weight"], w0 + 1, atol=1e-6, rtol=0)


def test_applied_swaps_in_and_restores() -> None:
    net = _net()
    ema = WeightAverage(net, decay=0.5)
    own = net[0].weight.detach().clone()
    with torch.no_grad():
        net[0].weight.mul_(3.0)
    moved = net[0].weight.detach().clone()
    with ema.applied(net):
        torch.testing.assert_close(net[0].weight, own)  # the average never saw an update
    torch.testing.assert_close(net[0].weight, moved)


def test_state_round_trip_and_mismatch() -> None:
    net = _net()
    ema = WeightAverage(net, decay=0.99)
    with torch.no_grad():
        net[0].weight.add_(1.0)
    ema.update(net)
    other = WeightAverage(_net(), decay=0.99)
    other.load_state_dict(ema.state_dict())
    assert other.updates == 1
    torch.testing.assert_close(other.shadow[0], ema.shadow[0])
    with pytest.raises(ValueError, match="does not match"):
        WeightAverage(nn.Linear(2, 2), 0.99).load_state_dict(ema.state_dict())
    with pytest.raises(ValueError, match="decay"):
        WeightAverage(net, decay=1.0)


def test_trainer_saves_and_resumes_the_average(tiny_root: Path, tmp_path: Path) -> None:
    train_keys = {
        "iters": 8,
        "val_interval": 4,
        "log_interval": 2,
        "checkpoint_interval": 100,
        "ema_decay": 0.5,
    }
    straight = train(tiny_config(tiny_root, tmp_path / "a", train=train_keys))
    last = load_checkpoint(tmp_path / "a" / "last.pth")
    # 'model' holds the average; the raw weights are in the resume state and differ from it
    raw = {
        k.removeprefix("network."): v for k, v in last["state"]["method"].items() if k.startswith("network.")
    }
    key = next(k for k in last["model"] if k.endswith("weight") and last["model"][k].dim() == 4)
    torch.testing.assert_close(last["model"][key], last["state"]["ema"]["shadow"][key])
    assert not torch.equal(last["model"][key], raw[key])
    # stopping at 4 and resuming gives the same average (and the same validation) as one run
    Trainer(tiny_config(tiny_root, tmp_path / "b", train=train_keys)).fit(until=4)
    resumed = Trainer(tiny_config(tiny_root, tmp_path / "b", train=train_keys)).fit()
    wb = load_checkpoint(tmp_path / "b" / "last.pth")["model"]
    for k in last["model"]:
        torch.testing.assert_close(last["model"][k], wb[k], rtol=0, atol=0, msg=k)
    assert resumed["mIoU"] == straight["mIoU"]


def test_bad_decay_is_a_config_error(tiny_root: Path, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="ema_decay"):
        tiny_config(tiny_root, tmp_path / "r", train={"ema_decay": 1.5})

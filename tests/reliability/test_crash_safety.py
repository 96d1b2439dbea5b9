"""Crash safety: SIGKILL at a random moment, resume, finish; no checkpoint is ever corrupt."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from reliability_helpers import cli_env, write_config

import ladseg.engine.checkpoint as ckpt_module
from ladseg.engine.checkpoint import load_checkpoint, save_checkpoint
from ladseg.engine.logging import read_metrics

ITERS = 30
#: seeds the kill moment (after which checkpoint, how far into the next interval), so a failure reruns alike
KILL_SEED = 1


def temp_files(folder: Path) -> list[str]:
    return sorted(name for name in os.listdir(folder) if name.endswith(".tmp"))


def assert_checkpoints_load(folder: Path) -> dict[str, int]:
    """Every checkpoint in ``folder`` loads with weights_only=True; returns name -> iteration."""
    found = {}
    names = [n for n in os.listdir(folder) if n.endswith((".pth", ".pth.prev")) and not n.startswith(".")]
    assert "last.pth" in names, names
    for path in sorted(folder / n for n in names):
        payload = torch.load(path, map_location="cpu", weights_only=True)
        found[path.name] = int(payload["meta"]["iteration"])
    return found


def test_a_kill_between_the_two_renames_leaves_last_pth(tmp_path: Path, monkeypatch) -> None:
    """The window SIGKILL can hit: .prev already updated, the new file not yet renamed."""
    path = tmp_path / "last.pth"
    save_checkpoint(path, {"x": torch.tensor([1])})
    save_checkpoint(path, {"x": torch.tensor([2])})
    real_replace = os.replace

    def killed_before_final_rename(src, dst):
        if Path(dst) == path:
            raise KeyboardInterrupt  # stands in for the process dying here
        real_replace(src, dst)

    monkeypatch.setattr(ckpt_module.os, "replace", killed_before_final_rename)
    monkeypatch.setattr(ckpt_module.os, "unlink", lambda p: None)  # a killed process cleans nothing
    with pytest.raises(KeyboardInterrupt):
        save_checkpoint(path, {"x": torch.tensor([3])})
    monkeypatch.undo()
    assert load_checkpoint(path)["x"].item() == 2  # still the last complete one
    assert load_checkpoint(tmp_path / "last.pth.prev")["x"].item() == 2
    assert temp_files(tmp_path)  # the orphan the kill left ...
    save_checkpoint(path, {"x": torch.tensor([4])})
    assert temp_files(tmp_path) == []  # ... is removed by the next save
    assert load_checkpoint(tmp_path / "last.pth.prev")["x"].item() == 2


def test_sigkill_then_resume_finishes_the_same_run(tiny_root: Path, tmp_path: Path) -> None:
    rng = random.Random(KILL_SEED)
    run = tmp_path / "run"
    cfg = write_config(tmp_path / "c.yaml", tiny_root, run,
                       train={"iters": ITERS, "checkpoint_interval": 2, "val_interval": 10,
                              "log_interval": 5})  # fmt: skip
    cmd = [sys.executable, "-m", "ladseg", "train", str(cfg)]
    log = (tmp_path / "first.log").open("w")
    proc = subprocess.Popen(cmd, cwd=tmp_path, env=cli_env(), stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 180
        while not (run / "last.pth").exists():
            assert proc.poll() is None, (tmp_path / "first.log").read_text()
            assert time.monotonic() < deadline, "no checkpoint within 180 s"
            time.sleep(0.02)
        # a random moment: after a random number of checkpoints (one per 2 iterations) plus a
        # random fraction of the time between two of them, so a write can be under way
        target = rng.randint(1, ITERS // 2 - 3)
        seen, stamp, times = 1, (run / "last.pth").stat().st_mtime_ns, [time.monotonic()]
        while seen < target and proc.poll() is None:
            now = (run / "last.pth").stat().st_mtime_ns
            if now != stamp:
                seen, stamp = seen + 1, now
                times.append(time.monotonic())
            time.sleep(0.01)
        gap = (times[-1] - times[0]) / (len(times) - 1) if len(times) > 1 else 0.3
        delay = rng.uniform(0.0, gap)
        time.sleep(delay)
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
        log.close()
    info = f"seed={KILL_SEED} target={target} checkpoints delay={delay:.3f}s"
    assert proc.returncode == -signal.SIGKILL, f"the run ended before the kill ({info})"
    killed_at = assert_checkpoints_load(run)["last.pth"]  # complete even right after the kill
    assert 2 <= killed_at < ITERS, info

    resumed = subprocess.run(cmd, cwd=tmp_path, env=cli_env(), capture_output=True, text=True, timeout=300)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert f"resumed {run / 'last.pth'} at iteration {killed_at}" in resumed.stdout, info
    iterations = assert_checkpoints_load(run)
    assert iterations["last.pth"] == ITERS and iterations["last.pth.prev"] == ITERS - 2, (info, iterations)
    assert load_checkpoint(run / "last.pth")["state"]["iteration"] == ITERS
    assert temp_files(run) == [], info
    logged = [r["iter"] for r in read_metrics(run) if r["type"] == "train"]
    assert logged == sorted(set(logged)), (info, logged)  # records after the checkpoint were not doubled

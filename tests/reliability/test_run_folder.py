"""One writer per run folder, resume that agrees with its config, interrupts that save, a full disk."""

from __future__ import annotations

import resource
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from reliability_helpers import cli_env, cli_error, error_lines, write_config

from ladseg.cli import main
from ladseg.engine.checkpoint import load_checkpoint, save_checkpoint
from ladseg.engine.logging import read_metrics

LONG = 100_000  # iterations: a run that is still going when the test acts on it


def start_training(cfg: Path, cwd: Path, *overrides: str) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "ladseg", "train", str(cfg), *overrides], cwd=cwd, env=cli_env(),
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip


def wait_for_steps(proc: subprocess.Popen, run: Path, steps: int = 2, timeout: float = 120) -> None:
    """Until ``metrics.jsonl`` holds ``steps`` train records (log_interval 1): the run is in its loop."""
    deadline = time.monotonic() + timeout
    while len([r for r in read_metrics(run) if r["type"] == "train"]) < steps:
        assert proc.poll() is None, proc.communicate()[1][-2000:]
        assert time.monotonic() < deadline, "the run did not start within the timeout"
        time.sleep(0.05)


def stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.kill()
    proc.communicate(timeout=60)


def test_a_second_run_on_a_folder_in_use_is_refused_and_a_killed_run_resumes(
    tiny_root: Path, tmp_path: Path, capsys
) -> None:
    run = tmp_path / "run"
    cfg = write_config(tmp_path / "c.yaml", tiny_root, run, train={"iters": LONG, "checkpoint_interval": 2})
    first = start_training(cfg, tmp_path)
    try:
        wait_for_steps(first, run, steps=3)
        message = cli_error(["train", str(cfg)], capsys)
        assert f"run.work_dir {run} is in use by process {first.pid}" in message
        first.send_signal(signal.SIGKILL)
        first.wait(timeout=60)
    finally:
        stop(first)
    records = read_metrics(run)
    killed_at = load_checkpoint(run / "last.pth")["meta"]["iteration"]
    # the refused run wrote nothing: one run's records, in order
    assert [r["iter"] for r in records] == sorted({r["iter"] for r in records})
    assert main(["train", str(cfg), f"train.iters={killed_at + 1}"]) == 0  # the kill left no stuck lock
    assert f"resumed {run / 'last.pth'} at iteration {killed_at}" in capsys.readouterr().out


def test_resume_applies_a_changed_learning_rate_and_says_so(tiny_root: Path, tmp_path: Path, capsys) -> None:
    run = tmp_path / "run"
    cfg = write_config(tmp_path / "c.yaml", tiny_root, run, optim={"lr": 0.01, "poly_power": 1.0})
    assert main(["train", str(cfg)]) == 0
    capsys.readouterr()
    assert main(["train", str(cfg), "optim.lr=0.04", "train.iters=4"]) == 0
    out = capsys.readouterr().out
    assert "applied from the config: optim.lr 0.01 -> 0.04" in out
    assert "train.iters 2 -> 4 (the poly schedule restarts over the new total of 4 iterations)" in out
    lrs = {r["iter"]: r["lr"] for r in read_metrics(run) if r["type"] == "train"}
    assert lrs[3] == pytest.approx(0.04 * (1 - 2 / 4))  # the new rate on the new schedule, step index 2
    groups = load_checkpoint(run / "last.pth")["state"]["optimizer"]["param_groups"]
    assert {g["initial_lr"] for g in groups} == {0.04}


def test_resume_refuses_a_changed_seed(tiny_root: Path, tmp_path: Path, capsys) -> None:
    cfg = write_config(tmp_path / "c.yaml", tiny_root, tmp_path / "run")
    assert main(["train", str(cfg)]) == 0
    capsys.readouterr()
    message = cli_error(["train", str(cfg), "train.iters=4", "run.seed=5"], capsys)
    assert "run.seed=5 differs from the seed of" in message and "keep run.seed=0" in message
    assert load_checkpoint(tmp_path / "run" / "last.pth")["meta"]["iteration"] == 2  # nothing trained


def test_rerunning_a_finished_run_logs_its_last_validation_once(
    tiny_root: Path, tmp_path: Path, capsys
) -> None:
    run = tmp_path / "run"
    cfg = write_config(tmp_path / "c.yaml", tiny_root, run, train={"val_interval": 2})
    assert main(["train", str(cfg)]) == 0
    first = capsys.readouterr().out
    assert main(["train", str(cfg)]) == 0
    second = capsys.readouterr().out
    assert [r["iter"] for r in read_metrics(run) if r["type"] == "val"] == [2]
    for key in ('"mIoU"', '"best_mIoU"'):  # the same report as the run that finished
        assert key in second and first.split(key)[1][:12] == second.split(key)[1][:12], (first, second)


def test_a_validation_lost_to_a_kill_after_the_checkpoint_is_redone(
    tiny_root: Path, tmp_path: Path, capsys
) -> None:
    """The state a kill between ``last.pth`` at iteration 2 and its validation leaves: the resumed run
    validates iteration 2 before it goes on."""
    run = tmp_path / "run"
    cfg = write_config(tmp_path / "c.yaml", tiny_root, run, train={"val_interval": 2})
    assert main(["train", str(cfg)]) == 0
    log = run / "metrics.jsonl"
    log.write_text("".join(line + "\n" for line in log.read_text().splitlines() if '"val"' not in line))
    assert main(["train", str(cfg), "train.iters=4"]) == 0
    assert [r["iter"] for r in read_metrics(run) if r["type"] == "val"] == [2, 4]


@pytest.mark.parametrize(("sig", "code"), [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_an_interrupt_saves_last_pth_and_names_the_resume_iteration(
    sig: int, code: int, tiny_root: Path, tmp_path: Path
) -> None:
    run = tmp_path / "run"
    cfg = write_config(
        tmp_path / "c.yaml", tiny_root, run, train={"iters": LONG, "checkpoint_interval": LONG}
    )
    proc = start_training(cfg, tmp_path)
    try:
        wait_for_steps(proc, run, steps=2)
        proc.send_signal(sig)
        _, err = proc.communicate(timeout=120)
    finally:
        stop(proc)
    assert proc.returncode == code, err[-2000:]
    lines = [line for line in error_lines(err) if line.startswith("ladseg train: error:")]
    assert len(lines) == 1 and "Traceback" not in err, err[-2000:]
    saved = load_checkpoint(run / "last.pth")
    at = saved["state"]["iteration"]
    assert at >= 2 and saved["meta"]["iteration"] == at
    name = signal.Signals(sig).name
    assert f"interrupted by {name} at iteration {at}: saved {run / 'last.pth'}" in lines[0]
    assert f"resume from iteration {at}" in lines[0]


def test_a_full_disk_while_saving_names_the_file_and_keeps_the_previous(
    tiny_root: Path, tmp_path: Path, capsys
) -> None:
    """torch's zip writer reports a failed write as a RuntimeError: a file size limit makes it fail."""
    run = tmp_path / "run"
    cfg = write_config(tmp_path / "c.yaml", tiny_root, run, train={"iters": 1})
    assert main(["train", str(cfg)]) == 0
    capsys.readouterr()
    size = (run / "last.pth").stat().st_size
    old = resource.getrlimit(resource.RLIMIT_FSIZE)
    previous_handler = signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    resource.setrlimit(resource.RLIMIT_FSIZE, (size // 2, old[1]))
    try:
        message = cli_error(["train", str(cfg), "train.iters=2"], capsys)
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, old)
        signal.signal(signal.SIGXFSZ, previous_handler)
    last = run / "last.pth"
    assert message.startswith(f"cannot write {last} (is the disk full? torch said: "), message
    assert f"the previous checkpoint {last} is intact" in message, message
    assert load_checkpoint(last)["meta"]["iteration"] == 1
    assert not [p for p in run.iterdir() if p.name.endswith(".tmp")]


def test_a_full_disk_on_the_first_save_says_nothing_was_written(tmp_path: Path) -> None:
    path = tmp_path / "last.pth"
    old = resource.getrlimit(resource.RLIMIT_FSIZE)
    previous_handler = signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    resource.setrlimit(resource.RLIMIT_FSIZE, (65536, old[1]))
    try:
        with pytest.raises(Exception) as info:
            save_checkpoint(path, {"x": torch.zeros(200_000)})
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, old)
        signal.signal(signal.SIGXFSZ, previous_handler)
    from ladseg.errors import LadsegError

    assert isinstance(info.value, LadsegError), repr(info.value)
    assert f"cannot write {path}" in str(info.value) and f"nothing was written at {path}" in str(info.value)
    assert list(tmp_path.iterdir()) == []

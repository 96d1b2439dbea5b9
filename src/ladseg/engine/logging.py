"""Run logging: one JSON line per log interval and per validation (+ optional TensorBoard).

``work_dir/metrics.jsonl`` is the run's machine-readable history: ``{"type": "train", "iter",
"lr", "loss", <terms>, "s_per_iter"}`` and ``{"type": "val", "iter", "aAcc", "mIoU", "mAcc",
"IoU": {...}}``. Only the main process writes (single-process runs always do).
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any

from ladseg.engine.dist import is_main_process


def _plain(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None if math.isnan(value) else str(value)
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    return value


class RunLogger:
    """Appends records to ``metrics.jsonl``; mirrors scalars to TensorBoard when asked."""

    def __init__(self, work_dir: str | Path, tensorboard: bool = False) -> None:
        self.path = Path(work_dir) / "metrics.jsonl"
        self.main = is_main_process()
        self.writer = None
        if self.main:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            if tensorboard:
                self.writer = self._tensorboard(Path(work_dir) / "tb")

    @staticmethod
    def _tensorboard(log_dir: Path) -> Any:
        try:
            from torch.utils.tensorboard import SummaryWriter  # lazy: tensorboard is optional
        except ImportError as exc:
            from ladseg.errors import ConfigError

            raise ConfigError(
                "train.tensorboard=true needs the tensorboard package (pip install 'ladseg[tensorboard]')"
            ) from exc
        return SummaryWriter(str(log_dir))

    def log(self, kind: str, iteration: int, values: dict[str, Any]) -> None:
        if not self.main:
            return
        record = {"type": kind, "iter": iteration, **_plain(values)}
        with self.path.open("a") as fh:
            fh.write(json.dumps(record) + "\n")
        if self.writer is not None:
            for key, value in values.items():
                if isinstance(value, (int, float)) and not isinstance(value, bool):
                    self.writer.add_scalar(f"{kind}/{key}", value, iteration)

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()


def read_metrics(work_dir: str | Path) -> list[dict[str, Any]]:
    """The records of a run's ``metrics.jsonl`` (for tests, reports and plots)."""
    path = Path(work_dir) / "metrics.jsonl"
    if not path.is_file():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def drop_records_after(work_dir: str | Path, iteration: int) -> int:
    """Remove records newer than ``iteration`` (written after the checkpoint a run resumes from,
    so they are about to be logged again); returns how many were dropped."""
    path = Path(work_dir) / "metrics.jsonl"
    if not path.is_file():
        return 0
    lines = [ln for ln in path.read_text().splitlines() if ln.strip()]
    keep = [ln for ln in lines if json.loads(ln).get("iter", 0) <= iteration]
    if len(keep) != len(lines):
        tmp = path.with_suffix(".jsonl.tmp")
        tmp.write_text("".join(ln + "\n" for ln in keep))
        os.replace(tmp, path)
    return len(lines) - len(keep)


def set_aside_old_log(work_dir: Path) -> Path | None:
    """A fresh start in a used folder keeps the old ``metrics.jsonl`` as ``metrics.previous-N.jsonl``."""
    log = work_dir / "metrics.jsonl"
    if not log.is_file():
        return None
    n = 1
    while (work_dir / f"metrics.previous-{n}.jsonl").exists():
        n += 1
    aside = work_dir / f"metrics.previous-{n}.jsonl"
    log.rename(aside)
    return aside

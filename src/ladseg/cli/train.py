"""``ladseg train CONFIG [key=value ...] [--dry-run]``: one run of any method through the one engine.

``--dry-run`` prints the resolved config (``_base_`` chain, overrides, defaults, the method's typed
section) as YAML and exits: the config a run would save as its ``config.yaml``.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import yaml


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "train",
        help="train a model (supervised, LAD teacher, distillation) from a YAML config",
        description="Train from a YAML config. Dotted overrides change any key, e.g. "
        "'train.iters=100 data.crop_size=[64,64] teacher.checkpoint=teacher.pth'. The run folder "
        "(run.work_dir, default work_dirs/<config name>) receives config.yaml, metrics.jsonl, "
        "best.pth and last.pth; a folder that holds last.pth is resumed (train.resume=false to start over).",
    )
    p.add_argument("config", help="YAML config file")
    p.add_argument("overrides", nargs="*", metavar="key=value", help="dotted config overrides")
    p.add_argument(
        "--dry-run", action="store_true",
        help="print the resolved, validated config as YAML and exit (nothing is read or written)",
    )  # fmt: skip
    p.set_defaults(func=run)


def checkpoint_note(work_dir: Path) -> str:
    """What a stopped run leaves to resume from: ``last.pth`` and its iteration, when it loads."""
    from ladseg.engine.checkpoint import load_checkpoint
    from ladseg.errors import LadsegError

    last = work_dir / "last.pth"
    if not last.is_file():
        return "no checkpoint was written yet"
    try:
        iteration = load_checkpoint(last)["meta"]["iteration"]
    except (LadsegError, OSError, RuntimeError, KeyError, TypeError):
        return f"{last} is the last checkpoint"
    return f"{last} (iteration {iteration}) is intact: run the same command again to resume from it"


def run(args: argparse.Namespace) -> int:
    from ladseg.cli import (
        PLACE_ERRNOS,
        describe_os_error,
        is_out_of_memory,
        out_of_memory_error,
        probe_future_dir,
    )
    from ladseg.engine.config import load_config
    from ladseg.engine.dist import launched_as_main_process
    from ladseg.engine.trainer import train
    from ladseg.errors import LadsegError

    cfg = load_config(args.config, args.overrides)  # every section checked: before any data is read
    if args.dry_run:
        print(yaml.safe_dump(cfg.to_dict(), sort_keys=False), end="")
        return 0
    work_dir = Path(cfg.run.work_dir or "work_dirs")
    probe_future_dir(work_dir, "run.work_dir")
    try:
        result = train(cfg)
    except OSError as exc:  # e.g. the disk fills up while writing a checkpoint or the log
        if exc.errno not in PLACE_ERRNOS:
            raise
        where = f"{exc.filename}: " if exc.filename else f"in {work_dir}: "
        raise LadsegError(
            f"{where}{describe_os_error(exc)}; training stopped, {checkpoint_note(work_dir)}"
        ) from exc
    except (RuntimeError, MemoryError) as exc:  # torch.OutOfMemoryError is a RuntimeError
        if not is_out_of_memory(exc):
            raise
        d = cfg.data
        smaller = [max(32, c // 2 // 32 * 32) for c in d.crop_size]
        raise out_of_memory_error(
            exc,
            "training",
            f"this run used data.batch_size={d.batch_size} and data.crop_size={list(d.crop_size)}: "
            f"lower them, e.g. data.batch_size={max(1, d.batch_size // 2)} or "
            f"data.crop_size=[{smaller[0]},{smaller[1]}] (train.amp=bf16 also saves memory); "
            f"a run folder with last.pth resumes from it",
        ) from exc
    if not launched_as_main_process():  # under torchrun only rank 0 reports
        return 0
    summary = {k: (round(v, 4) if isinstance(v, float) else v) for k, v in result.items()}
    print(json.dumps(summary, indent=2))
    print(f"run folder: {result['work_dir']}")
    return 0

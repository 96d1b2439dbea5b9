"""``ladseg train CONFIG [key=value ...]``: one run of any method through the one engine."""

from __future__ import annotations

import argparse
import json


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
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ladseg.cli import is_out_of_memory, out_of_memory_error
    from ladseg.engine.config import load_config
    from ladseg.engine.dist import launched_as_main_process
    from ladseg.engine.trainer import train

    cfg = load_config(args.config, args.overrides)
    try:
        result = train(cfg)
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

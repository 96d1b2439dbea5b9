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
    from ladseg.engine.config import load_config
    from ladseg.engine.trainer import train

    cfg = load_config(args.config, args.overrides)
    result = train(cfg)
    summary = {k: (round(v, 4) if isinstance(v, float) else v) for k, v in result.items()}
    print(json.dumps(summary, indent=2))
    print(f"run folder: {result['work_dir']}")
    return 0

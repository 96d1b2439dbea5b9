"""``ladseg eval CONFIG --checkpoint FILE``: per-class IoU/Acc table of a checkpoint on a split.

A thin layer on the engine's :func:`~ladseg.engine.checkpoint_eval.evaluate_checkpoint` (what
:func:`ladseg.evaluate` runs); the options replace the config's ``eval`` settings.

The config names the dataset (and its split); the network and its input normalisation come
from the checkpoint (a ladseg checkpoint or a reference CIRKD/LAD one).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path


def add_inference_args(p: argparse.ArgumentParser, defaults: str = "the config's eval section") -> None:
    """Options shared with ``predict``: inference mode, scales, flip, window; ``defaults`` says
    where an option not given comes from (in the help)."""
    from ladseg.cli import positive_float, positive_int
    from ladseg.engine.inference_settings import MODES, MULTISCALE_AVERAGES, MULTISCALE_ROUNDINGS, SCALE_MODES

    p.add_argument("--mode", choices=MODES, help=f"inference mode (default: {defaults})")
    p.add_argument(
        "--scales", type=positive_float, nargs="+",
        help="scales (> 0) for multiscale, e.g. 0.5 0.75 1.0 1.25 1.5 1.75",
    )  # fmt: skip
    p.add_argument("--flip", action="store_true", help="add horizontally flipped inputs (multiscale)")
    p.add_argument("--crop-size", type=positive_int, nargs=2, metavar=("H", "W"), help="sliding-window size")
    p.add_argument(
        "--stride", type=positive_int, nargs=2, metavar=("H", "W"),
        help="sliding-window stride (at most the window; default 2/3 of it)",
    )  # fmt: skip
    p.add_argument("--scale-mode", choices=SCALE_MODES, help="how each scale of multiscale runs")
    p.add_argument(
        "--average", choices=MULTISCALE_AVERAGES,
        help="multiscale: mean of softmax probabilities (default) or of logits (the reference's)",
    )  # fmt: skip
    p.add_argument(
        "--rounding", choices=MULTISCALE_ROUNDINGS,
        help="multiscale: scaled sizes rounded (default) or floored (the reference's)",
    )  # fmt: skip
    p.add_argument("--device", default=None, help="auto | cpu | cuda | cuda:N (default: run.device / auto)")
    p.add_argument(
        "--backend", default=None, metavar="NAME",
        help="torch | onnxruntime (the checkpoint exported to ONNX once, cached beside it); "
        "default: torch for a checkpoint, onnxruntime for an .onnx file",
    )  # fmt: skip


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "eval",
        help="evaluate a checkpoint (mIoU table) on a dataset split",
        description="Evaluate a checkpoint on the config's validation split. Put dotted overrides "
        "right after CONFIG, e.g. 'ladseg eval cfg.yaml data.root=data/VOCdevkit --checkpoint best.pth'.",
    )
    p.add_argument("config", help="YAML config naming the dataset")
    p.add_argument("overrides", nargs="*", metavar="key=value", help="dotted config overrides")
    p.add_argument(
        "--checkpoint",
        required=True,
        help="ladseg or reference checkpoint (.pth), or an .onnx export (fp32 or int8)",
    )
    p.add_argument("--split", default=None, help="dataset split (default: data.val_split)")
    p.add_argument("--json", type=Path, default=None, help="also write the metrics to this JSON file")
    add_inference_args(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ladseg.api import apply_inference_options
    from ladseg.cli import is_out_of_memory, out_of_memory_error, prepare_output_file, write_text_file
    from ladseg.engine.checkpoint_eval import evaluate_checkpoint
    from ladseg.engine.config import inference_settings, load_config

    cfg = load_config(args.config, args.overrides)  # checks the method section too (a LAD teacher's)
    apply_inference_options(
        cfg, mode=args.mode, scales=args.scales, flip=args.flip, crop_size=args.crop_size,
        stride=args.stride, scale_mode=args.scale_mode, average=args.average, rounding=args.rounding,
    )  # fmt: skip
    if args.device:
        cfg.run.device = args.device
    if args.json:
        prepare_output_file(args.json, "--json", (args.config, args.checkpoint))  # before the evaluation
    e = cfg.eval
    try:
        metrics, dataset = evaluate_checkpoint(
            cfg, args.checkpoint, split=args.split, verbose=True, backend=args.backend
        )
    except (RuntimeError, MemoryError) as exc:  # torch.OutOfMemoryError is a RuntimeError
        if not is_out_of_memory(exc):
            raise
        crop = e.crop_size or cfg.data.crop_size
        raise out_of_memory_error(
            exc,
            "evaluation",
            f"this run used eval.batch_size={e.batch_size}, mode {e.mode!r} and window {list(crop)} "
            "(eval.crop_size, default data.crop_size): use eval.batch_size=1, sliding-window inference "
            "(--mode slide --crop-size H W) or a smaller data.crop_size",
        ) from exc
    desc = inference_settings(cfg).describe()
    print(
        f"{args.checkpoint} on {cfg.data.dataset}/{args.split or cfg.data.val_split} ({len(dataset)} images, {desc})"
    )
    print(metrics.table())
    if args.json:
        record = {"checkpoint": str(args.checkpoint), "mode": desc, **metrics.to_dict()}
        write_text_file(args.json, json.dumps(record, indent=2), "--json")
    return 0

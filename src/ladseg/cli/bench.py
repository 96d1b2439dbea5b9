"""``ladseg bench``: images/s and peak memory of the training steps, label encoder and inference modes.

Same as ``python -m ladseg.bench``; see :mod:`ladseg.bench` for what is measured and how.
"""

from __future__ import annotations

import argparse


def register(subparsers: argparse._SubParsersAction) -> None:
    from ladseg.bench import add_arguments

    p = subparsers.add_parser(
        "bench",
        help="benchmark supervised / LAD teacher / distillation steps and inference modes",
        description="Time a supervised, a LAD-teacher and a distillation step side by side (ratios from "
        "one run), optionally with channels_last, autocast and torch.compile; the label encoder against "
        "a per-class loop; and whole / slide / multi-scale+flip inference. With --inference: a student's "
        "CPU inference in PyTorch NCHW, channels_last, ONNX Runtime fp32 and int8, interleaved (measure "
        "on an idle machine). Prints Markdown tables.",
    )
    add_arguments(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ladseg.bench import run as run_bench

    return run_bench(args)

"""``ladseg kd-bench``: every distillation method against one fair control, per protocol (a recipe)."""

from __future__ import annotations

import argparse
from pathlib import Path


def _seed_count(text: str) -> int:
    try:
        count = int(text)
    except ValueError:
        count = 0
    if count < 1:
        raise argparse.ArgumentTypeError(f"expected a number of seeds >= 1, got {text!r}")
    return count


def _seed(text: str) -> int:
    try:
        seed = int(text)
    except ValueError:
        seed = -1
    if seed < 0:
        raise argparse.ArgumentTypeError(f"expected a seed >= 0, got {text!r}")
    return seed


def _names(text: str) -> list[str]:
    return [t for t in text.split(",") if t]


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "kd-bench",
        help="the distillation benchmark: every method against its protocol's fair control",
        description="Trains a strong teacher once, then per seed a baseline student, the control, "
        "self-distillation and a student per distillation method, in LAD's fine-tuning protocol and in "
        "CIRKD's from-scratch protocol, and writes OUT/report/ (mean ± std over seeds, the paired "
        "difference to the control with its standard error). Finished stages are reused; an unfinished "
        "one resumes, so seeds can run as separate processes (--seed 0 / --seed 1 --seed 2).",
    )
    p.add_argument("recipe", type=Path, help="benchmark recipe, e.g. _recipes_/camvid_kd.yaml")
    p.add_argument("--out", type=Path, default=None, help="run folder (default: runs/<recipe name>)")
    p.add_argument("--seeds", type=_seed_count, default=1, help="run seeds 0 .. N-1 (default 1)")
    p.add_argument(
        "--seed", type=_seed, action="append", default=None,
        help="run this seed only (repeatable; instead of --seeds): seeds as separate processes",
    )  # fmt: skip
    p.add_argument("--protocols", type=_names, default=None, help="finetune,scratch (default: the recipe's)")
    p.add_argument("--methods", type=_names, default=None, help="only these methods (default: all listed)")
    p.add_argument(
        "--time-matched", type=_names, default=None, metavar="METHODS",
        help="add, in each protocol, a control given the wall-clock of each named method's student stage",
    )  # fmt: skip
    p.add_argument("--report-only", action="store_true", help="train nothing; score what has finished")
    p.add_argument("--quick", action="store_true", help="a smoke test on a few images (numbers mean nothing)")
    p.add_argument("overrides", nargs="*", metavar="key=value", help="overrides applied to every stage")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ladseg.demo.kd_benchmark import run_bench

    out = args.out or Path("runs") / (args.recipe.stem + ("-quick" if args.quick else ""))
    run_bench(
        args.recipe,
        out,
        seeds=args.seed or list(range(args.seeds)),
        protocols=args.protocols,
        methods=args.methods,
        quick=args.quick,
        extra=args.overrides,
        train_stages=not args.report_only,
        time_matched=args.time_matched,
    )
    return 0

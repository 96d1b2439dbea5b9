"""``ladseg kd-bench``: every distillation method against one fair control, per protocol (a recipe)."""

from __future__ import annotations

import argparse
from pathlib import Path


def _seed_list(text: str) -> list[int]:
    """``3`` -> seeds 0, 1, 2; ``1,2`` -> seeds 1 and 2 (to run seeds as separate processes)."""
    try:
        seeds = [int(s) for s in text.split(",")] if "," in text else list(range(int(text)))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a count (3) or a list (0,2), got {text!r}") from None
    if not seeds or min(seeds) < 0:
        raise argparse.ArgumentTypeError(f"expected at least one seed >= 0, got {text!r}")
    return seeds


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
        "one resumes, so seeds can run as separate processes (--seeds 0 / --seeds 1,2).",
    )
    p.add_argument("recipe", type=Path, help="benchmark recipe, e.g. _recipes_/camvid_kd.yaml")
    p.add_argument("--out", type=Path, default=None, help="run folder (default: runs/<recipe name>)")
    p.add_argument("--seeds", type=_seed_list, default=[0], help="a count (3 = seeds 0-2) or a list (1,2)")
    p.add_argument("--protocols", type=_names, default=None, help="finetune,scratch (default: the recipe's)")
    p.add_argument("--methods", type=_names, default=None, help="only these methods (default: all listed)")
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
        seeds=args.seeds,
        protocols=args.protocols,
        methods=args.methods,
        quick=args.quick,
        extra=args.overrides,
        train_stages=not args.report_only,
    )
    return 0

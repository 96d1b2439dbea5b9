"""``ladseg demo``: train a baseline, a LAD teacher, a LAD student and a fair control (and, as the
recipe lists them, self-distillation and more label variants' teachers and students) on the
embedded data, then print the comparison table and write a report folder."""

from __future__ import annotations

import argparse
from pathlib import Path


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "demo",
        help="LAD end to end on the embedded data (baseline, teacher, LAD student, control)",
        description="Runs LAD end to end on CPU or GPU on the embedded dataset (generated offline on first "
        "use): baseline student, label-assisted teacher, LAD student and a control trained for as many extra "
        "iterations without a teacher; the default recipe adds self-distillation and a second teacher (label "
        "variant 'boundary') with its student. Prints one table and writes OUT/report/ (Markdown, JSON, curves, "
        "predictions). A finished stage is reused when the demo is run again with the same OUT, also by "
        "another recipe that shares it (e.g. --recipe _recipes_/demo_onehot.yaml --out runs/demo).",
    )
    p.add_argument(
        "--out", type=Path, default=None,
        help="run folder (default: runs/<recipe name>, e.g. runs/demo; runs/<recipe name>-quick with --quick)",
    )  # fmt: skip
    p.add_argument("--seeds", type=int, default=1, help="repeat with N seeds; report mean and spread")
    p.add_argument(
        "--quick", action="store_true", help="a short run (a smoke test: numbers are not meaningful)"
    )
    p.add_argument(
        "--recipe", type=Path, default=None,
        help="demo recipe YAML: a file, or a packaged recipe such as _recipes_/camvid.yaml (CamVid, with "
        "data.root=PATH); default: the packaged _recipes_/demo.yaml",
    )  # fmt: skip
    p.add_argument("overrides", nargs="*", metavar="key=value", help="overrides applied to every stage")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ladseg.config_lookup import DEFAULT_RECIPE
    from ladseg.demo.pipeline import run_demo
    from ladseg.errors import ConfigError

    if args.seeds < 1:
        raise ConfigError("--seeds must be at least 1")
    recipe = args.recipe or DEFAULT_RECIPE
    out = args.out or Path("runs") / (recipe.stem + ("-quick" if args.quick else ""))
    run_demo(out, seeds=args.seeds, quick=args.quick, recipe_path=recipe, extra=args.overrides)
    return 0

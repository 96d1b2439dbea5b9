"""The ``ladseg`` command. Each subcommand lives in its own module with a ``register`` function.

A module in ``SUBCOMMANDS`` defines ``register(subparsers) -> None``, which adds its parser and
sets ``func=run`` where ``run(args) -> int``. User errors (:class:`ladseg.errors.LadsegError`)
are printed as one line and exit with status 2; ``--debug`` shows the traceback.
"""

from __future__ import annotations

import argparse
import importlib
import sys

from ladseg import __version__
from ladseg.errors import LadsegError

# Order = order in --help.
SUBCOMMANDS = ["demo", "train", "eval", "predict", "info", "convert", "export", "check_data", "bench"]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="ladseg",
        description="Knowledge distillation for semantic segmentation with Label Assisted Distillation (LAD).",
        epilog="Run 'ladseg COMMAND --help' for the options of a command.",
    )
    parser.add_argument("--version", action="version", version=f"ladseg {__version__}")
    parser.add_argument("--debug", action="store_true", help="show full tracebacks on errors")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in SUBCOMMANDS:
        try:
            module = importlib.import_module(f"ladseg.cli.{name}")
        except ModuleNotFoundError as exc:  # a subcommand not built yet stays out of --help
            if exc.name == f"ladseg.cli.{name}":
                continue
            raise
        module.register(sub)
    return parser


def is_out_of_memory(exc: BaseException) -> bool:
    """A GPU out-of-memory (``torch.OutOfMemoryError``) or the CPU allocator's failure."""
    import torch

    if isinstance(exc, (torch.OutOfMemoryError, MemoryError)):
        return True
    return isinstance(exc, RuntimeError) and "can't allocate memory" in str(exc)


def out_of_memory_error(exc: BaseException, what: str, hint: str) -> LadsegError:
    """The user error that replaces an out-of-memory crash: what ran out, and what to lower."""
    first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
    return LadsegError(f"out of memory during {what} ({first}); {hint}")


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 0
    try:
        return int(args.func(args) or 0)
    except LadsegError as exc:
        if args.debug:
            raise
        print(f"ladseg {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130

"""The ``ladseg`` command. Each subcommand lives in its own module with a ``register`` function.

A module in ``SUBCOMMANDS`` defines ``register(subparsers) -> None``, which adds its parser and
sets ``func=run`` where ``run(args) -> int``. User errors (:class:`ladseg.errors.LadsegError`)
are printed as one line and exit with status 2 (an interrupted training run: 130 for SIGINT, 143
for SIGTERM); ``--debug`` shows the traceback. So are the
errors of a place that cannot be written (full disk, read-only folder, a file where a folder is
expected): the output options are checked before the work starts (:func:`prepare_output_dir`,
:func:`prepare_output_file`), and a disk that fills up later names the file.
"""

from __future__ import annotations

import argparse
import errno
import importlib
import math
import os
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ladseg import __version__
from ladseg.errors import LadsegError

# Order = order in --help.
SUBCOMMANDS = [
    "demo",
    "kd_bench",
    "train",
    "eval",
    "predict",
    "info",
    "convert",
    "export",
    "check_data",
    "bench",
]


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
        importlib.import_module(f"ladseg.cli.{name}").register(sub)
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


# -- option values ------------------------------------------------------------------------------
def _checked_number(
    convert: Callable[[str], Any], ok: Callable[[Any], bool], expected: str, name: str
) -> Any:
    """An argparse type: ``convert`` the text, then insist on ``ok``; both failures say what was expected."""

    def parse(text: str) -> Any:
        try:
            value = convert(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {expected}, got {text!r}") from None
        if not ok(value):
            raise argparse.ArgumentTypeError(f"expected {expected}, got {text}")
        return value

    parse.__name__ = name
    return parse


#: an integer > 0 (a window or stride of 0 divides by zero)
positive_int = _checked_number(int, lambda v: v > 0, "a positive integer", "positive_int")
#: a finite number > 0 (a scale of 0 or less has no image)
positive_float = _checked_number(
    float, lambda v: math.isfinite(v) and v > 0, "a number > 0", "positive_float"
)
#: a number in [0, 1] (an opacity)
unit_float = _checked_number(float, lambda v: 0.0 <= v <= 1.0, "a number in [0, 1]", "unit_float")


# -- places to write -----------------------------------------------------------------------------
#: errno values that say the place is at fault (full, read-only, not a folder), not the program
PLACE_ERRNOS = frozenset(
    getattr(errno, name)
    for name in ("ENOSPC", "EDQUOT", "EFBIG", "EROFS", "EACCES", "EPERM", "ENOTDIR", "EISDIR",
                 "EEXIST", "ENAMETOOLONG", "ENOENT")
    if hasattr(errno, name)
)  # fmt: skip
_HINTS = {
    errno.ENOSPC: "the disk is full: free some space or write elsewhere",
    errno.EROFS: "a read-only file system",
    errno.ENOTDIR: "a part of the path is a file, not a folder",
    errno.EISDIR: "a folder is in the way, not a file",
    errno.EEXIST: "a file is in the way, not a folder",
}


def describe_os_error(exc: OSError) -> str:
    """``No space left on device (the disk is full: ...)``: the system's words and what they mean."""
    reason = exc.strerror or str(exc)
    hint = _HINTS.get(exc.errno or 0)
    return f"{reason} ({hint})" if hint else reason


def prepare_output_dir(path: Path, what: str) -> Path:
    """Create the folder ``path`` (and its parents) and prove a file can be written in it.

    Anything in the way (a file where the folder should be, a read-only or full disk) is a
    :class:`LadsegError` naming ``what`` (the option), raised before any work starts.
    """
    if path.exists() and not path.is_dir():
        raise LadsegError(f"{what} {path} is a file, not a folder")
    try:
        path.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=path):
            pass
    except OSError as exc:
        raise LadsegError(f"{what} {path}: cannot write there: {describe_os_error(exc)}") from exc
    return path


def prepare_output_file(path: Path, what: str, inputs: tuple[str | Path, ...] = ()) -> Path:
    """Check that the file ``path`` can be written (its folder is created): see :func:`prepare_output_dir`.

    ``inputs`` are the files the command reads (its config, its checkpoint): writing over one of
    them is refused.
    """
    if path.is_dir():
        raise LadsegError(f"{what} {path} is a folder; give a file name")
    for source in inputs:
        if path.exists() and Path(source).exists() and os.path.samefile(path, source):
            raise LadsegError(f"{what} {path} would overwrite {source}, an input of this command")
    if path.exists():  # overwritten in place: the file itself must be writable, not its folder
        if not os.access(path, os.W_OK):
            raise LadsegError(f"{what} {path}: cannot write it (permission denied)")
        return path
    prepare_output_dir(path.parent, f"{what} {path}: its folder")
    return path


def probe_future_dir(path: Path, what: str) -> None:
    """Like :func:`prepare_output_dir` for a folder created later, but creates nothing: the nearest
    existing folder above ``path`` must take a file (a failing run then leaves no folder behind)."""
    path = Path(path).absolute()
    existing = path
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir():
        where = "" if existing == path else f" ({existing} is a file)"
        raise LadsegError(f"{what} {path} cannot be a folder{where}")
    try:
        with tempfile.TemporaryFile(dir=existing):
            pass
    except OSError as exc:
        raise LadsegError(f"{what} {path}: cannot write in {existing}: {describe_os_error(exc)}") from exc


def write_text_file(path: Path, text: str, what: str) -> None:
    """Write ``text`` to ``path``; a failure (full disk) is a one-line error and leaves no partial file."""
    try:
        path.write_text(text)
    except OSError as exc:
        if path.is_file():  # not a device such as /dev/full
            path.unlink(missing_ok=True)
        raise LadsegError(f"{what}: cannot write {path}: {describe_os_error(exc)}") from exc


def parse_command_line(parser: argparse.ArgumentParser, argv: list[str] | None) -> argparse.Namespace:
    """Like ``parse_args``, but ``key=value`` overrides may also follow an option.

    argparse fills a ``nargs="*"`` positional once, so ``ladseg train CONFIG --dry-run a=1`` would be
    an "unrecognized arguments" error; the overrides after the option are appended instead.
    """
    args, extra = parser.parse_known_args(argv)
    stray = [a for a in extra if a.startswith("-") or "=" not in a]
    if extra and (stray or not isinstance(getattr(args, "overrides", None), list)):
        parser.parse_args(argv)  # exits with argparse's own message for what is really unknown
    if extra:
        args.overrides = [*args.overrides, *extra]
    return args


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parse_command_line(parser, argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 0
    try:
        return int(args.func(args) or 0)
    except LadsegError as exc:
        if args.debug:
            raise
        print(f"ladseg {args.command}: error: {exc}", file=sys.stderr)
        return int(getattr(exc, "exit_code", 2))  # an interrupted run: 128 + the signal, as a shell says
    except OSError as exc:  # a place that cannot be read or written, met after the checks
        if args.debug or exc.errno not in PLACE_ERRNOS:
            raise
        where = f"{exc.filename}: " if exc.filename else ""
        print(f"ladseg {args.command}: error: {where}{describe_os_error(exc)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130

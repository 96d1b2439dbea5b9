"""``ladseg check-data CONFIG [key=value ...]``: scan a dataset once and report every bad file.

Exit status 0 when every file is fine, 1 when any is bad (so scripts can gate a training run
on it); a layout error (missing folder, empty split) is a user error like everywhere else (2).
An image without its label (or a list entry without its files) is one more bad file, not a stop;
a split that cannot be read at all (e.g. empty) is reported after the splits that could be.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "check-data",
        help="scan a dataset: bad files, label ids found, class pixel frequencies",
        description="Read every image and label of the config's dataset once and list all problems "
        "(unreadable or truncated files, label/image size mismatches, label ids outside the classes "
        "and 255), the label ids found on disk and the pixel share of each class. Exit status 1 "
        "when any file is bad.",
    )
    p.add_argument("config", help="YAML config naming the dataset (data.dataset, data.root)")
    p.add_argument("overrides", nargs="*", metavar="key=value", help="dotted config overrides")
    p.add_argument(
        "--split",
        default="all",
        help="train (data.train_split), val (data.val_split), all (both; default) or a dataset split name",
    )
    p.add_argument(
        "--json",
        nargs="?",
        const="-",
        default=None,
        metavar="FILE",
        help="print the report as JSON (or write it to FILE) instead of the tables",
    )
    p.add_argument("--workers", type=int, default=None, help="reader threads (default: data.num_workers)")
    p.set_defaults(func=run)


def resolve_splits(choice: str, train_split: str, val_split: str) -> list[str]:
    """``train``/``val``/``all`` -> the config's split names (deduplicated); anything else as is."""
    named = {"train": [train_split], "val": [val_split], "all": [train_split, val_split]}
    return list(dict.fromkeys(named.get(choice, [choice])))


def run(args: argparse.Namespace) -> int:
    from ladseg.cli import prepare_output_file, write_text_file
    from ladseg.data import build_dataset
    from ladseg.data.base import collect_missing_files
    from ladseg.data.check import BadFile, format_report, scan_dataset
    from ladseg.engine.config import load_config
    from ladseg.errors import DatasetError, LadsegError

    cfg = load_config(args.config, args.overrides)
    d = cfg.data
    workers = d.num_workers if args.workers is None else max(0, args.workers)
    if args.json not in (None, "-"):
        prepare_output_file(Path(args.json), "--json", (args.config,))  # before the scan, not after it
    reports, failed = [], []
    for split in resolve_splits(args.split, d.train_split, d.val_split):
        with collect_missing_files() as missing:
            try:
                dataset = build_dataset(d.dataset, d.root, split, transform=None, **d.kwargs)
            except DatasetError as exc:
                failed.append((split, exc, missing))
                continue
        report = scan_dataset(dataset, name=d.dataset, workers=workers, progress=sys.stderr.isatty())
        report.bad[:0] = [BadFile(str(path), "missing", f"missing {what}: {path}") for path, what in missing]
        reports.append(report)
    if not reports:  # nothing could be read: the first layout error, as everywhere else
        raise failed[0][1]
    missing_in_failed = [path for _, _, missing in failed for path, _ in missing]
    bad = sum(len(r.bad) for r in reports) + len(missing_in_failed)
    if args.json is not None:
        text = json.dumps({
            "bad_files": bad,
            "splits": [r.to_dict() for r in reports],
            "unreadable_splits": [
                {"split": split, "problem": str(exc), "missing_files": [str(p) for p, _ in missing]}
                for split, exc, missing in failed
            ],
        }, indent=2)  # fmt: skip
        if args.json == "-":
            print(text)
        else:
            write_text_file(Path(args.json), text + "\n", "--json")
    else:
        print("\n\n".join(format_report(r) for r in reports))
        for split, _, missing in failed:
            if missing:
                print(f"\n{d.dataset}/{split}: missing files ({len(missing)}):")
                print("\n".join(f"  [missing] missing {what}: {path}" for path, what in missing))
    if args.json != "-":  # stdout holds only the JSON when it is printed
        verdict = f"{bad} bad file{'s' if bad != 1 else ''}" if bad else "no bad files"
        print(f"check-data: {verdict} in {sum(r.items for r in reports)} items", file=sys.stderr)
    if failed:  # the splits that could be read are reported above; this one is a layout error
        raise LadsegError("; ".join(str(exc) for _, exc, _ in failed))
    return 1 if bad else 0

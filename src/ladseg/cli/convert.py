"""``ladseg convert``: turn a reference (CIRKD/LAD) checkpoint into a ladseg checkpoint."""

from __future__ import annotations

import argparse
import os
import tempfile
from pathlib import Path

import torch


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "convert",
        help="import a reference (CIRKD/LAD) checkpoint",
        description="Convert a DeepLabV3/PSPNet ResNet checkpoint saved by the reference code into a "
        "ladseg checkpoint (model, depth, classes and input channels are detected). The reference's "
        "input normalisation ('reference_bgr') is recorded in the checkpoint's meta.",
    )
    p.add_argument("source", help="reference checkpoint (.pth)")
    p.add_argument("output", help="ladseg checkpoint to write (.pth)")
    p.set_defaults(func=run)


def save_atomic(obj: dict, path: str | Path) -> None:
    """torch.save to a temporary file in the target folder, then rename (no half-written file)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=path.name + ".", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        torch.save(obj, tmp)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def run(args: argparse.Namespace) -> int:
    from ladseg.models.convert import load_reference_checkpoint

    model = load_reference_checkpoint(args.source)
    meta = {
        "spec": model.spec,
        "normalize": model.meta["normalize"],
        "class_names": None,
        "source": str(args.source),
    }
    save_atomic({"model": model.state_dict(), "meta": meta}, args.output)
    spec = model.spec
    print(
        f"converted {args.source} -> {args.output}: {spec['name']} / {spec['backbone']}, "
        f"{spec['num_classes']} classes, {spec['in_channels']} input channels, normalize={meta['normalize']}"
    )
    return 0

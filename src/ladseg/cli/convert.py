"""``ladseg convert``: turn a reference (CIRKD/LAD) checkpoint into a ladseg checkpoint.

``--image-only`` imports a reference LAD student, saved with a 4-channel first conv and run with a zero
4th channel, as the 3-channel network it is (that channel's weights dropped: exact); it also turns a
ladseg checkpoint converted without it into an image-only one.
"""

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
    p.add_argument(
        "--image-only", action="store_true",
        help="import a reference student (4-channel first conv, run with a zero 4th channel by the reference "
        "eval.py) as an image-only 3-channel model by dropping the first conv's extra input channels: exact, "
        "a zero channel contributes nothing. Not for a LAD teacher, whose extra channel reads the label. "
        "SOURCE may also be a ladseg checkpoint converted without this option",
    )  # fmt: skip
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
    from ladseg.engine.checkpoint import build_model_from_checkpoint, is_ladseg_checkpoint, load_checkpoint
    from ladseg.models.convert import load_reference_checkpoint, to_image_only

    payload = load_checkpoint(args.source) if args.image_only else {}
    if is_ladseg_checkpoint(payload):  # an earlier conversion that kept the 4th channel
        model, meta = build_model_from_checkpoint(payload)
        model, dropped = to_image_only(model)
        dropped += int(meta.get("dropped_input_channels", 0) or 0)
        meta = {**meta, "spec": model.spec}
    else:
        model = load_reference_checkpoint(args.source, image_only=args.image_only)
        dropped = int(model.meta.get("dropped_input_channels", 0))
        meta = {"normalize": model.meta["normalize"], "class_names": None, "spec": model.spec}
    meta["source"] = str(args.source)
    if dropped:
        meta["dropped_input_channels"] = dropped
    save_atomic({"model": model.state_dict(), "meta": meta}, args.output)
    spec = model.spec
    print(
        f"converted {args.source} -> {args.output}: {spec['name']} / {spec['backbone']}, "
        f"{spec['num_classes']} classes, {spec['in_channels']} input channels"
        + (f" ({dropped} dropped)" if dropped else "")
        + f", normalize={meta['normalize']}"
    )
    return 0

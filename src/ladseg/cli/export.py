"""``ladseg export CHECKPOINT --onnx out.onnx``: the trained student as an ONNX model.

Batch, height and width stay dynamic; the output is logits at the input size. After export the
file is checked with ``onnx.checker`` and, when onnxruntime is installed, run against PyTorch at
the tracing size and at a second size.
"""

from __future__ import annotations

import argparse
from pathlib import Path


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "export",
        help="export a trained student checkpoint to ONNX (dynamic batch and image size)",
        description="Export the checkpoint's network (3-channel student) to ONNX. Input 'image': "
        "N x 3 x H x W, normalised as in training (stored in the file's metadata); output 'logits': "
        "N x K x H x W at the input size.",
    )
    p.add_argument("checkpoint", help="ladseg or reference checkpoint (.pth)")
    p.add_argument("--onnx", required=True, type=Path, help="output .onnx file")
    p.add_argument("--opset", type=int, default=17, help="ONNX opset (default 17)")
    p.add_argument("--size", type=int, nargs=2, default=[512, 512], metavar=("H", "W"),
                   help="example input size used for tracing (default 512 512)")  # fmt: skip
    p.add_argument("--no-verify", action="store_true", help="skip the onnxruntime vs PyTorch comparison")
    p.add_argument(
        "--atol", type=float, default=1e-3, help="largest accepted |onnx - torch| logit difference"
    )
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import torch

    from ladseg.errors import LadsegError
    from ladseg.export import export_checkpoint, onnx_max_error

    h, w = args.size
    if h < 32 or w < 32:
        raise LadsegError(f"--size {h} {w}: use at least 32 x 32 (the networks down-sample by 8 to 32)")
    model, meta = export_checkpoint(args.checkpoint, args.onnx, args.opset, (h, w))
    print(f"wrote {args.onnx} (opset {args.opset}, input N x 3 x H x W, normalize={meta.get('normalize')})")
    if args.no_verify:
        return 0
    try:
        import onnxruntime  # noqa: F401
    except ImportError:
        print("onnxruntime not installed: skipped the numerical check")
        return 0
    gen = torch.Generator().manual_seed(0)
    inputs = [torch.randn(1, 3, h, w, generator=gen), torch.randn(2, 3, h + 24, w + 40, generator=gen)]
    err = onnx_max_error(args.onnx, model, inputs)
    print(f"onnxruntime vs PyTorch: max |diff| = {err:.2e} at {h}x{w} and {h + 24}x{w + 40}")
    if err > args.atol:
        raise LadsegError(f"ONNX output differs from PyTorch by {err:.2e} > --atol {args.atol}")
    return 0

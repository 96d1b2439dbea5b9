"""``ladseg export CHECKPOINT --onnx out.onnx``: the trained student as an ONNX model.

Batch, height and width stay dynamic; the output is logits at the input size. After export the
file is checked with ``onnx.checker`` and, when onnxruntime is installed, run against PyTorch at
the tracing size and at a second size.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from ladseg.cli import positive_int


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
    q = p.add_argument_group(
        "int8", "static QDQ quantization (per-channel weights), calibrated on training images"
    )
    q.add_argument("--int8", action="store_true", help="write the int8 model to --onnx (instead of fp32)")
    q.add_argument("--calib-config", default=None,
                   help="config naming the calibration dataset (default: the checkpoint's training config)")  # fmt: skip
    q.add_argument("--calib-split", default=None, help="calibration split (default: data.train_split)")
    q.add_argument("--calib-images", type=Path, default=None, help="calibrate on a folder of images instead")
    q.add_argument("--calib-count", type=positive_int, default=32, help="calibration images (default 32)")
    q.add_argument("--plain-int8", action="store_true",
                   help="quantize the graph as exported, without the rewrites for ONNX Runtime's int8 kernels "
                   "(average pools as depthwise convs, spatial means as global pools, float output resize)")  # fmt: skip
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import torch

    from ladseg.errors import LadsegError
    from ladseg.export import export_checkpoint, onnx_max_error

    h, w = args.size
    if h < 32 or w < 32:
        raise LadsegError(f"--size {h} {w}: use at least 32 x 32 (the networks down-sample by 8 to 32)")
    if args.int8:
        return run_int8(args, (h, w))
    int8_only = (args.calib_config, args.calib_split, args.calib_images, args.plain_int8 or None)
    if any(v is not None for v in int8_only):
        raise LadsegError(
            "--calib-config/--calib-split/--calib-images/--plain-int8 shape an --int8 export; add --int8"
        )
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


def run_int8(args: argparse.Namespace, size: tuple[int, int]) -> int:
    """fp32 export to a temporary file, calibration, quantization to ``--onnx``; then how often int8
    and fp32 predict the same class on the calibration images."""
    import tempfile

    from ladseg.engine.backends import require_onnxruntime
    from ladseg.export import export_checkpoint
    from ladseg.quantize import checkpoint_calibration, prediction_agreement, quantize_int8

    require_onnxruntime()
    with tempfile.TemporaryDirectory(prefix="ladseg-export-") as tmp:
        fp32 = Path(tmp) / "fp32.onnx"
        _, meta = export_checkpoint(args.checkpoint, fp32, args.opset, size)
        calibration = checkpoint_calibration(
            meta, args.calib_count, args.calib_config, args.calib_split, args.calib_images
        )
        record = quantize_int8(fp32, args.onnx, calibration, rewrite=not args.plain_int8)
        agree = None if args.no_verify else prediction_agreement(fp32, args.onnx, calibration.inputs)
    src = calibration.source
    where = src.get("folder") or f"{src.get('dataset')}/{src.get('split')} ({src.get('config')})"
    print(
        f"wrote {args.onnx} (int8 QDQ, weights {record['weights']}; calibrated on {src['images']} images of {where})"
    )
    rewritten = [f"{len(v)} {k}" for k, v in record["rewritten"].items() if isinstance(v, list) and v]
    if record["float_nodes"] or rewritten:
        print(f"kept in float: {', '.join(record['float_nodes']) or 'nothing'}; rewritten for the int8 kernels: "
              f"{', '.join(rewritten) or 'nothing'}")  # fmt: skip
    if agree is not None:
        print(f"int8 vs fp32: {100 * agree:.2f} % of pixels predict the same class on the calibration images")
    return 0

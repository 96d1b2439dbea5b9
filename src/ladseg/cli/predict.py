"""``ladseg predict --checkpoint FILE --input FOLDER_OR_IMAGE --output DIR``: masks and overlays.

The checkpoint alone is enough: its meta gives the architecture, the input normalisation, the
class names and the palette (a VOC-style colour map when it has none).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from ladseg.cli.eval import add_inference_args


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "predict",
        help="segment images with a checkpoint (palette masks + overlays)",
        description="For each image write <stem>.png (palette PNG of class ids) and "
        "<stem>_overlay.<ext> (prediction blended over the image).",
    )
    p.add_argument("--checkpoint", required=True, help="ladseg or reference checkpoint (.pth)")
    p.add_argument("--input", required=True, type=Path, help="an image or a folder of images")
    p.add_argument("--output", required=True, type=Path, help="output folder")
    p.add_argument("--alpha", type=float, default=0.5, help="overlay opacity of the mask (0..1)")
    p.add_argument("--overlay-format", choices=["jpg", "png"], default="jpg")
    add_inference_args(p)
    p.set_defaults(func=run)


def list_images(path: Path) -> list[Path]:
    from ladseg.data.base import IMAGE_EXTENSIONS
    from ladseg.errors import DatasetError

    if path.is_file():
        return [path]
    if not path.is_dir():
        raise DatasetError(f"--input {path}: no such file or folder")
    images = sorted(p for p in path.iterdir() if p.suffix.lower() in IMAGE_EXTENSIONS and p.is_file())
    if not images:
        raise DatasetError(f"--input {path}: no images ({', '.join(IMAGE_EXTENSIONS)}) in this folder")
    return images


def run(args: argparse.Namespace) -> int:
    from ladseg.cli import is_out_of_memory, out_of_memory_error
    from ladseg.data.base import colorize, read_image
    from ladseg.data.classes import bit_palette
    from ladseg.data.transforms import build_transforms
    from ladseg.engine.builders import resolve_device
    from ladseg.engine.checkpoint import build_model_from_checkpoint
    from ladseg.engine.inference import infer
    from ladseg.errors import CheckpointError

    device = resolve_device(args.device or "auto")
    model, meta = build_model_from_checkpoint(args.checkpoint)
    if model.in_channels != 3:
        raise CheckpointError(
            f"{args.checkpoint} reads {model.in_channels} input channels (a LAD teacher also reads labels); "
            "predict needs an image-only model such as a distilled student"
        )
    model.to(device).eval()
    transform = build_transforms(False, normalize=meta.get("normalize") or "imagenet")
    palette = np.asarray(meta.get("palette") or bit_palette(model.num_classes), dtype=np.uint8).reshape(-1, 3)
    mode = args.mode or "whole"
    kwargs: dict = {}
    if mode == "slide" or args.scale_mode == "slide":
        if not args.crop_size:
            raise CheckpointError("slide inference needs --crop-size H W")
        kwargs.update(crop_size=args.crop_size, stride=args.stride)
    if mode == "multiscale":
        kwargs.update(scales=args.scales or [1.0], flip=args.flip, scale_mode=args.scale_mode or "whole")
    args.output.mkdir(parents=True, exist_ok=True)
    images = list_images(args.input)
    for path in images:
        rgb = read_image(path)
        x = transform({"image": rgb})["image"].unsqueeze(0).to(device)
        try:
            with torch.no_grad():
                pred = infer(model, x, mode, **kwargs).argmax(1)[0].to("cpu", torch.uint8).numpy()
        except (RuntimeError, MemoryError) as exc:  # torch.OutOfMemoryError is a RuntimeError
            if not is_out_of_memory(exc):
                raise
            raise out_of_memory_error(
                exc,
                f"prediction of {path} ({rgb.shape[1]}x{rgb.shape[0]})",
                "use sliding-window inference (--mode slide --crop-size H W) or fewer --scales",
            ) from exc
        mask = Image.frombytes("P", (pred.shape[1], pred.shape[0]), np.ascontiguousarray(pred).tobytes())
        flat = np.zeros((256, 3), dtype=np.uint8)
        flat[: len(palette)] = palette[:256]
        mask.putpalette(flat.flatten().tolist())
        mask.save(args.output / f"{path.stem}.png")
        blend = (1 - args.alpha) * rgb.astype(np.float32) + args.alpha * colorize(pred, palette).astype(
            np.float32
        )
        Image.fromarray(blend.round().clip(0, 255).astype(np.uint8)).save(
            args.output / f"{path.stem}_overlay.{args.overlay_format}"
        )
    names = meta.get("class_names") or []
    print(
        f"wrote {len(images)} masks and overlays to {args.output}"
        + (f" ({len(names)} classes)" if names else "")
    )
    return 0

"""``ladseg predict --checkpoint FILE --input FOLDER_OR_IMAGE --output DIR``: masks and overlays.

The checkpoint alone is enough: its meta gives the architecture, the input normalisation, the
class names and the palette (a VOC-style colour map when it has none), and the evaluation
settings of its training run (``eval.mode``, window, scales, ``data.resize_ratio``), which
predict follows unless told otherwise, so a mask matches what ``ladseg eval`` scored.

Every readable image is processed: an unreadable one is listed at the end (exit status 1).
Masks have the size of the image as displayed (EXIF orientation applied). Output names never
collide within a run: ``x.jpg`` and ``x.png`` in one folder give ``x_jpg.png`` and ``x_png.png``.
"""

from __future__ import annotations

import argparse
import sys
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

from ladseg.cli import unit_float
from ladseg.cli.eval import add_inference_args

#: what predict reads from a folder (a file named directly may be any format Pillow opens)
PREDICT_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp", ".gif")


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "predict",
        help="segment images with a checkpoint (palette masks + overlays)",
        description="For each image write <stem>.png (palette PNG of class ids) and "
        "<stem>_overlay.<ext> (prediction blended over the image); images sharing a stem keep "
        "their extension in the name (x_jpg.png, x_png.png). Unreadable images are listed at the "
        "end and the exit status is 1. Inference follows the checkpoint's evaluation settings "
        "unless the options below say otherwise.",
    )
    p.add_argument("--checkpoint", required=True, help="ladseg or reference checkpoint (.pth)")
    p.add_argument("--input", required=True, type=Path, help="an image or a folder of images")
    p.add_argument("--output", required=True, type=Path, help="output folder")
    p.add_argument("--alpha", type=unit_float, default=0.5, help="overlay opacity of the mask (0..1)")
    p.add_argument("--overlay-format", choices=["jpg", "png"], default="jpg")
    add_inference_args(p, defaults="the checkpoint's eval settings; whole image for a reference checkpoint")
    p.set_defaults(func=run)


def list_images(path: Path) -> list[Path]:
    from ladseg.errors import DatasetError

    if path.is_file():
        return [path]
    if not path.is_dir():
        raise DatasetError(f"--input {path}: no such file or folder")
    images = sorted(p for p in path.iterdir() if p.suffix.lower() in PREDICT_EXTENSIONS and p.is_file())
    if not images:
        raise DatasetError(f"--input {path}: no images ({', '.join(PREDICT_EXTENSIONS)}) in this folder")
    return images


def output_paths(images: Sequence[Path], output: Path, overlay_format: str) -> list[tuple[Path, Path]]:
    """(mask, overlay) for each image: ``<stem>.png``, ``<stem>_overlay.<fmt>``; images that share a
    stem keep their extension (``x_jpg``). Any remaining clash (two images, one output; an output
    that is an input) is a DatasetError naming both files: nothing is ever overwritten silently."""
    from ladseg.errors import DatasetError

    shared = Counter(p.stem.lower() for p in images)
    pairs = []
    for path in images:
        base = path.stem if shared[path.stem.lower()] == 1 else f"{path.stem}_{path.suffix.lstrip('.')}"
        pairs.append((output / f"{base}.png", output / f"{base}_overlay.{overlay_format}"))
    inputs = {p.resolve(): p for p in images}
    claimed: dict[Path, Path] = {}
    for path, outs in zip(images, pairs, strict=True):
        for out in outs:
            key = out.resolve()
            if key in inputs:
                raise DatasetError(
                    f"the output {out} of {path} would overwrite the input image {inputs[key]}; "
                    "choose another --output folder"
                )
            if key in claimed:
                raise DatasetError(f"{claimed[key]} and {path} would both write {out}; rename one of them")
            claimed[key] = path
    return pairs


def checkpoint_inference(meta: dict[str, Any], args: argparse.Namespace) -> tuple[str, dict[str, Any], float]:
    """(mode, keyword arguments of :func:`~ladseg.engine.inference.infer`, resize ratio): the options
    given, else the checkpoint's ``eval`` settings (window default ``data.crop_size``), else whole."""
    from ladseg.errors import LadsegError

    config = meta.get("config") if isinstance(meta.get("config"), dict) else {}
    saved_eval = config.get("eval") if isinstance(config.get("eval"), dict) else {}
    saved_data = config.get("data") if isinstance(config.get("data"), dict) else {}
    mode = args.mode or saved_eval.get("mode") or "whole"
    scale_mode = args.scale_mode or saved_eval.get("scale_mode") or "whole"
    kwargs: dict[str, Any] = {}
    if mode == "slide" or (mode == "multiscale" and scale_mode == "slide"):
        crop = args.crop_size or saved_eval.get("crop_size") or saved_data.get("crop_size")
        if not crop:
            raise LadsegError(
                "slide inference needs --crop-size H W (the checkpoint does not say its window)"
            )
        stride = args.stride or saved_eval.get("stride")
        if stride and any(s > c for s, c in zip(stride, crop, strict=True)):
            raise LadsegError(
                f"--stride {' '.join(map(str, stride))} is larger than the window {' '.join(map(str, crop))}: "
                "the pixels between two windows would get no prediction"
            )
        kwargs.update(crop_size=list(crop), stride=list(stride) if stride else None)
    if mode == "multiscale":
        scales = args.scales or saved_eval.get("scales") or [1.0]
        kwargs.update(
            scales=list(scales), flip=args.flip or bool(saved_eval.get("flip")), scale_mode=scale_mode
        )
    ratio = float(saved_data.get("resize_ratio") or 1.0)
    return mode, kwargs, ratio


def run(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from ladseg.cli import is_out_of_memory, out_of_memory_error, prepare_output_dir
    from ladseg.data.base import colorize, read_image
    from ladseg.data.classes import bit_palette
    from ladseg.data.transforms import build_transforms
    from ladseg.engine.builders import resolve_device
    from ladseg.engine.checkpoint import build_model_from_checkpoint
    from ladseg.engine.inference import infer
    from ladseg.errors import CheckpointError, DatasetError, LadsegError
    from ladseg.models.segmentor import resize_logits

    images = list_images(args.input)
    outputs = output_paths(images, args.output, args.overlay_format)
    device = resolve_device(args.device or "auto")
    model, meta = build_model_from_checkpoint(args.checkpoint)
    if model.in_channels != 3:
        raise CheckpointError(
            f"{args.checkpoint} reads {model.in_channels} input channels (a LAD teacher also reads labels); "
            "predict needs an image-only model such as a distilled student"
        )
    mode, kwargs, ratio = checkpoint_inference(meta, args)
    prepare_output_dir(args.output, "--output")
    model.to(device).eval()
    transform = build_transforms(False, normalize=meta.get("normalize") or "imagenet", resize_ratio=ratio)
    palette = np.asarray(meta.get("palette") or bit_palette(model.num_classes), dtype=np.uint8).reshape(-1, 3)
    flat = np.zeros((256, 3), dtype=np.uint8)
    flat[: len(palette)] = palette[:256]
    bad: list[str] = []
    written = 0
    bar = tqdm(images, desc="predict", unit="img", file=sys.stderr, disable=len(images) < 2)
    for path, (mask_path, overlay_path) in zip(bar, outputs, strict=True):
        try:
            rgb = read_image(path)
        except DatasetError as exc:
            bad.append(str(exc))
            continue
        x = transform({"image": rgb})["image"].unsqueeze(0).to(device)
        try:
            with torch.no_grad():
                scores = resize_logits(infer(model, x, mode, **kwargs).float(), rgb.shape[:2])
                pred = scores.argmax(1)[0].to("cpu", torch.uint8).numpy()
        except (RuntimeError, MemoryError) as exc:  # torch.OutOfMemoryError is a RuntimeError
            if not is_out_of_memory(exc):
                raise
            raise out_of_memory_error(
                exc,
                f"prediction of {path} ({rgb.shape[1]}x{rgb.shape[0]})",
                "use sliding-window inference (--mode slide --crop-size H W) or fewer --scales",
            ) from exc
        mask = Image.frombytes("P", (pred.shape[1], pred.shape[0]), np.ascontiguousarray(pred).tobytes())
        mask.putpalette(flat.flatten().tolist())
        blend = (1 - args.alpha) * rgb.astype(np.float32) + args.alpha * colorize(pred, palette).astype(
            np.float32
        )
        overlay = Image.fromarray(blend.round().clip(0, 255).astype(np.uint8))
        for image, target in ((mask, mask_path), (overlay, overlay_path)):
            try:
                image.save(target)
            except OSError as exc:  # a full disk: stop, and leave no half-written file
                target.unlink(missing_ok=True)
                raise LadsegError(
                    f"cannot write {target}: {exc.strerror or exc}; {written} of {len(images)} images were done"
                ) from exc
        written += 1
    bar.close()
    names = meta.get("class_names") or []
    print(
        f"wrote {written} masks and overlays to {args.output}"
        + (f" ({len(names)} classes)" if names else "")
        + (f"; mode {mode}" + (f", resize ratio {ratio:g}" if ratio != 1.0 else ""))
    )
    if bad:
        print(f"ladseg predict: {len(bad)} of {len(images)} images could not be read:", file=sys.stderr)
        for problem in bad:
            print(f"  {problem}", file=sys.stderr)
        return 1
    return 0

"""``ladseg predict --checkpoint FILE --input FOLDER_OR_IMAGE --output DIR``: masks and overlays.

A thin layer on :func:`ladseg.load` (the Python API): the checkpoint alone is enough: its meta
gives the architecture, the input normalisation, the class names and the palette (a VOC-style
colour map when it has none), and the evaluation settings of its training run (``eval.mode``,
window, scales, ``data.resize_ratio``), which predict follows unless told otherwise, so a mask
matches what ``ladseg eval`` scored.

Every readable image is processed: an unreadable one (a symbolic link loop or a dangling link
included) is listed at the end (exit status 1).
Masks have the size of the image as displayed (EXIF orientation applied). Output names never
collide within a run: ``x.jpg`` and ``x.png`` in one folder give ``x_jpg.png`` and ``x_png.png``.
Nor across runs: an output folder that already holds one of this run's output names (an earlier
run's results, perhaps of other pictures with the same names) is refused before anything is
written, unless ``--overwrite`` says to replace them.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections import Counter
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from PIL import Image

from ladseg.cli import unit_float
from ladseg.cli.eval import add_inference_args
from ladseg.data.base import IMAGE_EXTENSIONS

#: what predict reads from a folder (a file named directly may be any format Pillow opens)
PREDICT_EXTENSIONS = (*IMAGE_EXTENSIONS, ".gif")


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
    p.add_argument(
        "--checkpoint",
        required=True,
        help="ladseg or reference checkpoint (.pth), or an .onnx export (fp32 or int8)",
    )
    p.add_argument("--input", required=True, type=Path, help="an image or a folder of images")
    p.add_argument("--output", required=True, type=Path, help="output folder")
    p.add_argument("--alpha", type=unit_float, default=0.5, help="overlay opacity of the mask (0..1)")
    p.add_argument("--overlay-format", choices=["jpg", "png"], default="jpg")
    p.add_argument(
        "--overwrite", action="store_true",
        help="replace outputs an earlier run left in --output (without it such a folder is refused)",
    )  # fmt: skip
    add_inference_args(p, defaults="the checkpoint's eval settings; whole image for a reference checkpoint")
    p.set_defaults(func=run)


def list_images(path: Path) -> list[Path]:
    """The images of ``--input``: the file itself, or a folder's image files. A symbolic link loop or a
    dangling link among them is kept, so that it is listed as unreadable (why) instead of skipped
    silently; ``--input`` itself being one is said as such, not "no such file"."""
    from ladseg.data.images import broken_link
    from ladseg.errors import DatasetError

    problem = broken_link(path)
    if problem:
        raise DatasetError(f"--input {path} is {problem}")
    if path.is_file():
        return [path]
    if not path.is_dir():
        raise DatasetError(f"--input {path}: no such file or folder")
    images = sorted(
        p
        for p in path.iterdir()
        if p.suffix.lower() in PREDICT_EXTENSIONS and (p.is_file() or broken_link(p))
    )
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
    inputs = {Path(os.path.realpath(p)): p for p in images}  # realpath: a link loop resolves, not raises
    claimed: dict[Path, Path] = {}
    for path, outs in zip(images, pairs, strict=True):
        for out in outs:
            key = Path(os.path.realpath(out))
            if key in inputs:
                raise DatasetError(
                    f"the output {out} of {path} would overwrite the input image {inputs[key]}; "
                    "choose another --output folder"
                )
            if key in claimed:
                raise DatasetError(f"{claimed[key]} and {path} would both write {out}; rename one of them")
            claimed[key] = path
    return pairs


def refuse_earlier_outputs(outputs: Sequence[tuple[Path, Path]], output: Path) -> None:
    """An earlier run's files under this run's output names are kept: refuse, naming the first."""
    from ladseg.errors import LadsegError

    existing = [path for pair in outputs for path in pair if path.exists()]
    if existing:
        more = f" and {len(existing) - 1} more of this run's output names" if len(existing) > 1 else ""
        raise LadsegError(
            f"--output {output} already holds {existing[0].name}{more} (from an earlier run); nothing was "
            "written: choose another --output folder, or pass --overwrite to replace them"
        )


def run(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from ladseg.api import load
    from ladseg.cli import is_out_of_memory, out_of_memory_error, prepare_output_dir
    from ladseg.data.base import colorize, read_image
    from ladseg.data.classes import bit_palette
    from ladseg.errors import DatasetError, LadsegError

    images = list_images(args.input)
    outputs = output_paths(images, args.output, args.overlay_format)
    if not args.overwrite:
        refuse_earlier_outputs(outputs, args.output)
    segmenter = load(
        args.checkpoint, args.device or "auto", mode=args.mode, crop_size=args.crop_size, stride=args.stride,
        scales=args.scales, flip=args.flip, scale_mode=args.scale_mode, average=args.average,
        rounding=args.rounding, backend=args.backend,
    )  # fmt: skip
    prepare_output_dir(args.output, "--output")
    palette = np.asarray(segmenter.meta.get("palette") or bit_palette(segmenter.num_classes), dtype=np.uint8)
    palette = palette.reshape(-1, 3)
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
        try:
            pred = segmenter.predict(rgb).astype(np.uint8)
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
    names = segmenter.class_names
    ratio = segmenter.resize_ratio
    print(
        f"wrote {written} masks and overlays to {args.output}"
        + (f" ({len(names)} classes)" if names else "")
        + (f"; mode {segmenter.settings.mode}" + (f", resize ratio {ratio:g}" if ratio != 1.0 else ""))
        + f"; backend {segmenter.backend}"
    )
    if bad:
        print(f"ladseg predict: {len(bad)} of {len(images)} images could not be read:", file=sys.stderr)
        for problem in bad:
            print(f"  {problem}", file=sys.stderr)
        return 1
    return 0

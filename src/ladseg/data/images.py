"""Reading images and label maps as they are displayed, and colouring id maps.

Images are read as they are displayed: the EXIF orientation of a photo is applied, and 16-bit
images are scaled to 8 bits (not clipped at 255). An image larger than Pillow's decompression-bomb
limit is refused with a message naming ``LADSEG_MAX_IMAGE_PIXELS``, which raises that limit.
A label map's raw ids are mapped to train ids by a table; an id without a train id is an error
that names the file, never a silent clip.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from ladseg.data.classes import IGNORE_COLOR, IGNORE_INDEX
from ladseg.errors import ConfigError, DatasetError

#: environment variable: the largest image (in pixels) read; 0 = no limit (default: Pillow's ~89 M)
PIXEL_LIMIT_ENV = "LADSEG_MAX_IMAGE_PIXELS"

_PIXEL_LIMIT: dict[str, int | None] = {}  # "pillow": Pillow's own limit, "set": the one applied from the env


def apply_pixel_limit() -> int | None:
    """Set Pillow's decompression-bomb limit (pixels) from ``LADSEG_MAX_IMAGE_PIXELS`` (0 = none);
    without the variable, Pillow's own limit stays (about 89 M pixels). Returns the limit in force."""
    value = os.environ.get(PIXEL_LIMIT_ENV, "").strip()
    if "set" in _PIXEL_LIMIT and Image.MAX_IMAGE_PIXELS != _PIXEL_LIMIT["set"]:
        _PIXEL_LIMIT.clear()  # someone else changed the global since: theirs is Pillow's limit now
    if not value:
        if "set" in _PIXEL_LIMIT:  # the variable was removed: back to Pillow's limit
            Image.MAX_IMAGE_PIXELS = _PIXEL_LIMIT.pop("pillow")
            _PIXEL_LIMIT.clear()
        return Image.MAX_IMAGE_PIXELS
    try:
        limit = int(float(value))
    except ValueError:
        raise ConfigError(
            f"{PIXEL_LIMIT_ENV}={value!r}: expected a number of pixels (0 = no limit)"
        ) from None
    if limit < 0:
        raise ConfigError(f"{PIXEL_LIMIT_ENV}={value!r}: expected a number of pixels >= 0 (0 = no limit)")
    _PIXEL_LIMIT.setdefault("pillow", Image.MAX_IMAGE_PIXELS)
    _PIXEL_LIMIT["set"] = Image.MAX_IMAGE_PIXELS = limit or None  # Pillow reads this global at open
    return Image.MAX_IMAGE_PIXELS


def open_image(path: Path, what: str = "image") -> Image.Image:
    """``Image.open`` under :func:`apply_pixel_limit`; a file over the limit raises a DatasetError
    that says how to allow it (Pillow refuses it as a possible decompression bomb)."""
    apply_pixel_limit()
    try:
        return Image.open(path)
    except Image.DecompressionBombError as exc:
        raise DatasetError(
            f"{what} {path} is too large to read safely ({exc}); if you trust the file, allow larger "
            f"images with the environment variable {PIXEL_LIMIT_ENV}=<pixels> (0 = no limit)"
        ) from exc


def to_rgb8(img: Image.Image) -> np.ndarray:
    """An RGB uint8 H x W x 3 array as the image is displayed.

    The EXIF orientation is applied (a phone's portrait photo is stored sideways); 16-bit greyscale
    (``I;16``, ``I``) is scaled from 0..65535 to 0..255, float images (``F``) from 0..1 or 0..255;
    Pillow already reduces 16-bit RGB to its high byte.
    """
    img = ImageOps.exif_transpose(img)
    if img.mode.startswith("I") or img.mode == "F":
        values = np.asarray(img, dtype=np.float64)
        top = float(values.max()) if values.size else 0.0
        if img.mode == "F" and top <= 1.0:
            values = values * 255.0
        elif img.mode.startswith("I;16") or top > 255.0:
            values = values / 257.0  # 65535 -> 255
        grey = np.clip(np.round(values), 0, 255).astype(np.uint8)
        return np.repeat(grey[..., None], 3, axis=2)
    return np.array(img.convert("RGB"))  # a writable copy (torch.from_numpy needs one)


def read_image(path: Path) -> np.ndarray:
    """An RGB uint8 H x W x 3 array (see :func:`to_rgb8`); a missing, unreadable, truncated or
    too large file raises DatasetError."""
    try:
        with open_image(path) as img:
            return to_rgb8(img)
    except (OSError, UnidentifiedImageError, ValueError, SyntaxError) as exc:
        raise DatasetError(f"cannot read image {path}: {exc}") from exc


def read_png_label(path: Path) -> np.ndarray:
    """Raw ids of a single-channel label image (palette 'P' indices, 'L' or 16-bit values)."""
    try:
        with open_image(path, "label") as img:
            if img.mode not in ("P", "L", "I", "I;16", "I;16B", "I;16L"):
                raise DatasetError(
                    f"label {path} has mode {img.mode!r}; expected a single-channel id image "
                    "(palette 'P', 8-bit 'L' or 16-bit), not a colour rendering"
                )
            return np.asarray(img).astype(np.int64)
    except (OSError, UnidentifiedImageError, ValueError, SyntaxError) as exc:
        raise DatasetError(f"cannot read label {path}: {exc}") from exc


def map_label(raw: np.ndarray, table: np.ndarray, path: Path, num_classes: int) -> np.ndarray:
    """``table[raw]``; raw ids outside the table or mapped to -1 raise, naming file, ids and K."""
    if raw.ndim != 2:
        raise DatasetError(f"label {path} has shape {raw.shape}; expected a 2-D H x W id map")
    bad_range = (raw < 0) | (raw >= len(table))
    mapped = table[np.where(bad_range, 0, raw)]
    bad = bad_range | (mapped < 0)
    if bad.any():
        ids = np.unique(raw[bad])
        shown = ", ".join(str(int(i)) for i in ids[:20]) + (" ..." if len(ids) > 20 else "")
        raise DatasetError(
            f"label {path} holds ids [{shown}] that are not valid for this dataset "
            f"({num_classes} classes; valid on-disk ids map to 0..{num_classes - 1} or {IGNORE_INDEX} = ignore)"
        )
    return mapped


def colorize(mask: np.ndarray, palette: np.ndarray | Sequence[Sequence[int]]) -> np.ndarray:
    """Colour an H x W id map (prediction or label): ``palette[id]``, 255 -> VOC's ignore colour."""
    mask = np.asarray(mask)
    pal = np.asarray(palette, dtype=np.uint8).reshape(-1, 3)
    full = np.zeros((256, 3), dtype=np.uint8)
    full[: len(pal)] = pal[:256]
    full[IGNORE_INDEX] = IGNORE_COLOR
    bad = (mask < 0) | ((mask >= len(pal)) & (mask != IGNORE_INDEX))
    if bad.any():
        bad = np.unique(mask[bad])
        raise DatasetError(f"colorize: ids {bad.tolist()[:20]} have no colour in a {len(pal)}-entry palette")
    return full[mask.astype(np.int64)]

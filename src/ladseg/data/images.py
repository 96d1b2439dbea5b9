"""Reading images and label maps as they are displayed, and colouring id maps.

Images are read as they are displayed: the EXIF orientation of a photo is applied, and 16-bit
images are scaled to 8 bits (not clipped at 255). Float images are scaled by their real range
(:func:`float_to_uint8`: 0..1 or 0..255, widened to the values found, never clipped to black); a float
or 16-bit RGB TIFF, which Pillow cannot open, is read with ``tifffile``. An animated image (GIF, APNG,
multi-page TIFF) is read as its first frame, and says so once on stderr. A symbolic link loop or a
dangling link is named as such. An image larger than Pillow's decompression-bomb limit is refused with
a message naming ``LADSEG_MAX_IMAGE_PIXELS``, which raises that limit.

A label map's raw ids are mapped to train ids by a table; an id without a train id is an error
that names the file, never a silent clip. A palette ('P') label is its index plane; where the dataset
declares its colours (``palette.txt``), a file whose palette gives an id another colour is refused
(:class:`PaletteMismatch`), since its ids would then mean other classes.
"""

from __future__ import annotations

import errno
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from ladseg.data.classes import IGNORE_COLOR, IGNORE_INDEX
from ladseg.errors import ConfigError, DatasetError, PaletteMismatch
from ladseg.notes import warn

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


#: a float image whose largest value is at most this is a 0..1 image (a small overshoot such as 1.01
#: widens the range); above it, a 0..255 one. A 0..255 float image this dark would be black anyway.
FLOAT_UNIT_LIMIT = 2.0

_FIRST_FRAME_NOTED: set[str] = set()  # the animated files already reported (one line per file)


def float_to_uint8(values: np.ndarray, what: str = "image") -> np.ndarray:
    """Scale float values to uint8 by their real range: ``[min(0, low), max(top, high)]`` -> 0..255,
    where the nominal top is 1 when the largest value is at most :data:`FLOAT_UNIT_LIMIT`, else 255.

    Why: guessing 0..1 from ``max <= 1`` read a 0..1 image with one pixel at 1.01 as 0..255, i.e.
    black; values beyond the nominal range now widen it instead of being clipped. NaN or infinite
    values have no brightness: a DatasetError.
    """
    values = np.asarray(values, dtype=np.float64)
    if values.size == 0:
        return np.zeros(values.shape, dtype=np.uint8)
    if not np.isfinite(values).all():
        bad = int((~np.isfinite(values)).sum())
        raise DatasetError(f"{what} holds {bad} NaN or infinite value(s): a float image needs finite values")
    low, high = float(values.min()), float(values.max())
    top = max(high, 1.0 if high <= FLOAT_UNIT_LIMIT else 255.0)
    bottom = min(low, 0.0)
    scaled = (values - bottom) * (255.0 / (top - bottom))
    return np.clip(np.round(scaled), 0, 255).astype(np.uint8)


def to_rgb8(img: Image.Image, what: str = "image") -> np.ndarray:
    """An RGB uint8 H x W x 3 array as the image is displayed.

    The EXIF orientation is applied (a phone's portrait photo is stored sideways); 16-bit greyscale
    (``I;16``, ``I``) is scaled from 0..65535 to 0..255, float images (``F``) by their real range
    (:func:`float_to_uint8`); Pillow already reduces 16-bit RGB to its high byte.
    """
    img = ImageOps.exif_transpose(img)
    if img.mode == "F":
        grey = float_to_uint8(np.asarray(img), what)
        return np.repeat(grey[..., None], 3, axis=2)
    if img.mode.startswith("I"):
        values = np.asarray(img, dtype=np.float64)
        top = float(values.max()) if values.size else 0.0
        if img.mode.startswith("I;16") or top > 255.0:
            values = values / 257.0  # 65535 -> 255
        grey = np.clip(np.round(values), 0, 255).astype(np.uint8)
        return np.repeat(grey[..., None], 3, axis=2)
    return np.array(img.convert("RGB"))  # a writable copy (torch.from_numpy needs one)


def broken_link(path: Path) -> str | None:
    """What is wrong with ``path`` when it is a symbolic link that leads nowhere: ``"a symbolic link
    loop"`` or ``"a dangling symbolic link to T"``; None otherwise. Why: ``is_file()`` is False for
    both, so a folder listing skipped them silently and a loop was called "no such file"."""
    try:
        if not path.is_symlink():
            return None
        os.stat(path)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            return "a symbolic link loop"
        if exc.errno in (errno.ENOENT, errno.ENOTDIR):
            try:
                target = os.readlink(path)
            except OSError:
                target = "?"
            return f"a dangling symbolic link to {target}"
    return None


def note_first_frame(frames: int, path: Path) -> None:
    """Say once per file (one stderr line) that only the first of an animated image's frames is read."""
    if frames > 1 and str(path) not in _FIRST_FRAME_NOTED:
        _FIRST_FRAME_NOTED.add(str(path))
        warn(f"warning: image {path} has {frames} frames (animated or multi-page); its first frame is used")


def _is_tiff(path: Path) -> bool:
    try:
        with open(path, "rb") as f:
            return f.read(4) in (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+")
    except OSError:
        return False


def read_tiff(path: Path) -> np.ndarray:
    """An RGB uint8 array of a TIFF Pillow cannot open (float or 16-bit RGB, float64, float16), read
    with ``tifffile`` (installed with scikit-image): floats by :func:`float_to_uint8`, 16 bits / 257."""
    import tifffile

    try:
        with tifffile.TiffFile(path) as tif:
            note_first_frame(len(tif.pages), path)
            page = tif.pages[0]
            values, axes = page.asarray(), page.axes
    except Exception as exc:  # tifffile raises many kinds (TiffFileError, ValueError, ...)
        raise DatasetError(f"cannot read image {path}: {exc}") from exc
    if "S" in axes and axes.index("S") != len(axes) - 1:  # planar (S, Y, X) -> (Y, X, S)
        values = np.moveaxis(values, axes.index("S"), -1)
    values = np.squeeze(values)
    if values.ndim == 3 and values.shape[2] in (1, 2):  # grey (+ alpha)
        values = values[..., 0]
    if values.ndim == 3 and values.shape[2] >= 3:
        values = values[..., :3]  # drop alpha / extra samples
    if values.ndim not in (2, 3):
        raise DatasetError(f"cannot read image {path}: a TIFF page of shape {values.shape} is not an image")
    if values.dtype == np.uint8:
        rgb = values
    elif values.dtype == np.uint16:
        rgb = np.clip(np.round(values / 257.0), 0, 255).astype(np.uint8)
    else:
        rgb = float_to_uint8(values, f"image {path}")
    if rgb.ndim == 2:
        rgb = np.repeat(rgb[..., None], 3, axis=2)
    return np.ascontiguousarray(rgb)


def read_image(path: Path) -> np.ndarray:
    """An RGB uint8 H x W x 3 array (see :func:`to_rgb8`); a missing, unreadable, truncated or
    too large file raises DatasetError, naming a broken symbolic link as such."""
    try:
        with open_image(path) as img:
            note_first_frame(int(getattr(img, "n_frames", 1) or 1), path)
            return to_rgb8(img, f"image {path}")
    except UnidentifiedImageError as exc:
        if _is_tiff(path):
            return read_tiff(path)
        raise DatasetError(f"cannot read image {path}: {exc}") from exc
    except (OSError, ValueError, SyntaxError) as exc:
        problem = broken_link(path)
        if problem:
            raise DatasetError(f"cannot read image {path}: it is {problem}") from exc
        raise DatasetError(f"cannot read image {path}: {exc}") from exc


def read_png_label(
    path: Path, palette: np.ndarray | None = None, palette_name: str = "palette.txt"
) -> np.ndarray:
    """Raw ids of a single-channel label image (palette 'P' indices, 'L' or 16-bit values).

    A 'P' label is its index plane; with the dataset's declared ``palette`` (K x 3: a folder's
    ``palette.txt``, VOC's colour map; ``palette_name`` names it in errors) its own palette must give
    each id found in it that colour (:func:`check_label_palette`).
    """
    try:
        with open_image(path, "label") as img:
            if img.mode not in ("P", "L", "I", "I;16", "I;16B", "I;16L"):
                raise DatasetError(
                    f"label {path} has mode {img.mode!r}; expected a single-channel id image "
                    "(palette 'P', 8-bit 'L' or 16-bit), not a colour rendering"
                )
            ids = np.asarray(img).astype(np.int64)
            if img.mode == "P" and palette is not None:
                check_label_palette(ids, img.getpalette(), palette, path, palette_name)
            return ids
    except (OSError, UnidentifiedImageError, ValueError, SyntaxError) as exc:
        problem = broken_link(path)
        raise DatasetError(f"cannot read label {path}: {f'it is {problem}' if problem else exc}") from exc


def check_label_palette(
    ids: np.ndarray,
    file_palette: Sequence[int] | None,
    declared: np.ndarray,
    path: Path,
    declared_name: str = "palette.txt",
) -> None:
    """Raise :class:`PaletteMismatch` when the label's palette gives an id found in it another colour
    than the declared palette's row of that id (``declared_name``: where it is declared).

    Why: a tool that re-saves a mask may reorder its palette (and the indices with it), so the picture
    looks right while id 1 now means another class; such a file scored mIoU 0 without a word. Ids the
    declaration does not cover (255 = ignore) and ids without a colour in the file are not compared.
    """
    if not file_palette:
        return
    own = np.asarray(file_palette, dtype=np.int64).reshape(-1, 3)
    declared = np.asarray(declared, dtype=np.int64).reshape(-1, 3)
    found = np.unique(ids)
    found = found[(found >= 0) & (found < min(len(own), len(declared)))]
    wrong = [int(i) for i in found if (own[i] != declared[i]).any()]
    if wrong:
        first = wrong[0]
        more = f" (and {len(wrong) - 1} more of its ids)" if len(wrong) > 1 else ""
        raise PaletteMismatch(
            f"label {path} is a palette image whose colours disagree with the dataset's {declared_name}: id "
            f"{first} is {tuple(own[first].tolist())} in the file but {tuple(declared[first].tolist())} in "
            f"{declared_name}{more}, so its ids would be read as other classes; re-save it with the "
            f"{declared_name} order (ids as indices)"
            + (" or fix palette.txt" if declared_name == "palette.txt" else "")
        )


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

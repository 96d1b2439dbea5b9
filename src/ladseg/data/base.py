"""The dataset base class: layout checks, image/label reading, id mapping and per-item checks.

Representation (one for every dataset):

* without a transform, ``image`` is an H x W x 3 ``uint8`` RGB numpy array and ``mask`` an
  H x W ``int64`` numpy array of train ids (``0..K-1``, 255 = ignore);
* with the standard transforms (:mod:`ladseg.data.transforms`), ``image`` is a float32
  3 x H x W normalised tensor and ``mask`` an int64 H x W tensor.

Bad data is reported, never dropped or clipped: a missing folder or list file, an empty split,
an unreadable image, a mask whose size differs from its image and label ids outside
``[0, K) + {255}`` all raise :class:`ladseg.errors.DatasetError` naming the file.

Images are read as they are displayed: the EXIF orientation of a photo is applied, and 16-bit
images are scaled to 8 bits (not clipped at 255). An image larger than Pillow's decompression-bomb
limit is refused with a message naming ``LADSEG_MAX_IMAGE_PIXELS``, which raises that limit.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError
from torch.utils.data import Dataset

from ladseg.data.classes import IGNORE_COLOR, IGNORE_INDEX, identity_table
from ladseg.errors import ConfigError, DatasetError
from ladseg.registry import Registry

DATASETS: Registry[SegDataset] = Registry("dataset")
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp")
#: environment variable: the largest image (in pixels) read; 0 = no limit (default: Pillow's ~89 M)
PIXEL_LIMIT_ENV = "LADSEG_MAX_IMAGE_PIXELS"
# While set (see collect_missing_files), a dataset scan records items whose image or label file is
# missing and skips them, instead of stopping at the first.
_MISSING: ContextVar[list[tuple[Path, str]] | None] = ContextVar("ladseg_missing_files", default=None)


@contextmanager
def collect_missing_files() -> Iterator[list[tuple[Path, str]]]:
    """Within this block, datasets built skip items whose image or label is missing and append
    ``(path, what)`` to the yielded list (``ladseg check-data`` lists them all); outside it such an
    item is an error, as training needs."""
    found: list[tuple[Path, str]] = []
    token = _MISSING.set(found)
    try:
        yield found
    finally:
        _MISSING.reset(token)


@dataclass(frozen=True)
class Sample:
    """One item of a split: its name and the files that hold its image and label."""

    name: str
    image: Path
    mask: Path


class SegDataset(Dataset):
    """Base class: subclasses set ``classes``, ``palette``, ``layout`` and implement ``_scan``.

    ``label_table`` maps raw on-disk ids to train ids (see :mod:`ladseg.data.classes`);
    ``read_label`` reads the raw ids (a single-channel PNG unless overridden).
    ``splits`` maps the accepted split names (always including ``train`` and ``val`` where the
    dataset has them) to the names used on disk.
    """

    classes: tuple[str, ...] = ()
    palette: np.ndarray = np.zeros((0, 3), dtype=np.uint8)
    ignore_index: int = IGNORE_INDEX
    layout: str = ""
    splits: dict[str, str] = {}

    def __init__(self, root: str | Path, split: str, transform: Callable[[dict], dict] | None = None) -> None:
        self.root = Path(root).expanduser()
        if self.splits and split not in self.splits:
            raise DatasetError(
                f"{type(self).__name__}: unknown split {split!r}; valid splits: {', '.join(self.splits)}"
            )
        self.split = split
        self.transform = transform
        if not self.root.is_dir():
            self.missing(self.root, "dataset root folder")
        self.label_table = self.make_label_table()
        self.samples: list[Sample] = self._scan()
        if not self.samples:
            raise DatasetError(
                f"split {split!r} of {self.root} is empty (no image with a label found); "
                f"expected layout:\n{self.layout}"
            )

    # --- to be provided by subclasses ---------------------------------------------------------
    def _scan(self) -> list[Sample]:
        raise NotImplementedError

    def make_label_table(self) -> np.ndarray:
        return identity_table(self.num_classes)

    def read_label(self, path: Path) -> np.ndarray:
        return read_png_label(path)

    # --- shared behaviour -----------------------------------------------------------------------
    @property
    def num_classes(self) -> int:
        return len(self.classes)

    @property
    def disk_split(self) -> str:
        return self.splits.get(self.split, self.split)

    def missing(self, path: Path, what: str) -> None:
        """Raise the layout error: what is missing, and the layout this dataset expects."""
        raise DatasetError(f"missing {what}: {path}\nexpected layout under {self.root}:\n{self.layout}")

    def require(self, path: Path, what: str) -> Path:
        if not path.exists():
            self.missing(path, what)
        return path

    def has_item_file(self, path: Path, what: str) -> bool:
        """Whether the image or label file of one item exists; a missing one raises, or is recorded
        and skipped inside :func:`collect_missing_files`."""
        if path.exists():
            return True
        collected = _MISSING.get()
        if collected is None:
            self.missing(path, what)
        else:
            collected.append((path, what))
        return False

    def pair_by_stem(
        self,
        image_dir: Path,
        mask_dir: Path,
        mask_suffix: str = ".png",
        image_suffix: str = "",
        pattern: str = "*",
    ) -> list[Sample]:
        """Pair every image in ``image_dir`` (recursively matching ``pattern``) with its mask.

        The mask of ``<dir>/<stem><image_suffix>.<ext>`` is ``<mask_dir>/<dir>/<stem><mask_suffix>``;
        an image without a mask is an error, not a silent skip.
        """
        self.require(image_dir, "image folder")
        self.require(mask_dir, "label folder")
        samples = []
        for image in sorted(image_dir.glob(pattern)):
            if image.suffix.lower() not in IMAGE_EXTENSIONS or not image.is_file():
                continue
            stem = image.stem
            if image_suffix:
                if not stem.endswith(image_suffix):
                    continue
                stem = stem[: -len(image_suffix)]
            rel = image.parent.relative_to(image_dir)
            mask = mask_dir / rel / f"{stem}{mask_suffix}"
            if not self.has_item_file(mask, f"label of image {image}"):
                continue
            samples.append(Sample(str(rel / stem) if str(rel) != "." else stem, image, mask))
        return samples

    def pairs_from_names(
        self, list_file: Path, image_dir: Path, mask_dir: Path, image_ext: str, mask_ext: str
    ) -> list[Sample]:
        """Samples named one a line in ``list_file``: ``<image_dir>/<name><image_ext>`` and its label."""
        samples = []
        for item in self.read_list(list_file):
            image, mask = image_dir / f"{item}{image_ext}", mask_dir / f"{item}{mask_ext}"
            found = [  # both checked, so check-data lists a missing image and its missing label
                self.has_item_file(image, f"image listed in {list_file.name}"),
                self.has_item_file(mask, f"label listed in {list_file.name}"),
            ]
            if all(found):
                samples.append(Sample(item, image, mask))
        return samples

    def pairs_from_list(self, list_file: Path) -> list[Sample]:
        """Samples from an ``image label`` list file (one pair a line), as CIRKD and the LAD code use.

        Each path is taken relative to the dataset root; a path written for another machine
        (``/SegNet/CamVid/train/x.png``) is found by its trailing folders under the root.
        """
        samples = []
        for number, line in enumerate(self.require(list_file, "list file").read_text().splitlines(), 1):
            parts = line.split()
            if not parts:
                continue
            if len(parts) != 2:
                raise DatasetError(
                    f"{list_file}:{number}: expected 'image label' (two paths), got {line.strip()!r}"
                )
            image, mask = (self._under_root(p, list_file, number) for p in parts)
            if image is not None and mask is not None:
                samples.append(Sample(image.stem, image, mask))
        return samples

    def _under_root(self, written: str, list_file: Path, number: int) -> Path | None:
        parts = Path(written.lstrip("/")).parts
        for i in range(len(parts)):
            candidate = self.root.joinpath(*parts[i:])
            if candidate.is_file():
                return candidate
        collected = _MISSING.get()
        if collected is None:
            raise DatasetError(f"{list_file}:{number}: {written} not found under {self.root}")
        collected.append(
            (Path(written), f"file listed in {list_file}:{number} (not found under {self.root})")
        )
        return None

    def read_list(self, list_file: Path) -> list[str]:
        self.require(list_file, f"split list for {self.split!r}")
        return [line.split()[0] for line in list_file.read_text().splitlines() if line.strip()]

    def __len__(self) -> int:
        return len(self.samples)

    def load_image(self, index: int) -> np.ndarray:
        return read_image(self.samples[index].image)

    def load_mask(self, index: int) -> np.ndarray:
        """Train ids (int64, 255 = ignore) of item ``index``; bad ids raise."""
        path = self.samples[index].mask
        raw = self.read_label(path)
        return map_label(raw, self.label_table, path, self.num_classes)

    def __getitem__(self, index: int) -> dict[str, Any]:
        sample = self.samples[index]
        image = self.load_image(index)
        mask = self.load_mask(index)
        if image.shape[:2] != mask.shape:
            raise DatasetError(
                f"label {sample.mask} is {mask.shape[1]}x{mask.shape[0]} (WxH) but its image "
                f"{sample.image} is {image.shape[1]}x{image.shape[0]}; they must have the same size"
            )
        item: dict[str, Any] = {"image": image, "mask": mask, "name": sample.name}
        return self.transform(item) if self.transform is not None else item

    def __repr__(self) -> str:
        return f"{type(self).__name__}(root={str(self.root)!r}, split={self.split!r}, items={len(self)})"


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


def build_dataset(
    name: str,
    root: str | Path | None,
    split: str,
    transform: Callable[[dict], dict] | None = None,
    **kwargs: Any,
) -> SegDataset:
    """Build a registered dataset; ``root`` may be None only for ``embedded`` (its default root).

    ``split`` may carry a slice of the split's items in file-name order, ``"train[:300]"`` or
    ``"train[300:]"`` (the convention of Hugging Face datasets): a held-out part of the training
    split for choices, so that the val split stays for reporting.
    """
    try:
        factory = DATASETS.get(name)
    except KeyError as exc:
        raise ConfigError(str(exc.args[0])) from exc
    if not root and name != "embedded":
        raise DatasetError(f"dataset {name!r} needs a root folder (data.root in the config)")
    split, part = parse_split_slice(split)
    dataset = factory(root=root, split=split, transform=transform, **kwargs)
    if part is not None:
        dataset.samples = dataset.samples[part]
        if not dataset.samples:
            raise DatasetError(f"split slice [{part.start}:{part.stop}] of {split!r} ({name}) holds no item")
    return dataset


_SLICE = re.compile(r"^(?P<name>[^\[\]]+)\[(?P<start>-?\d*):(?P<stop>-?\d*)\]$")


def parse_split_slice(split: str) -> tuple[str, slice | None]:
    """``"train[:300]"`` -> ("train", slice(None, 300)); a plain name -> (name, None)."""
    if "[" not in split:
        return split, None
    match = _SLICE.match(split)
    if match is None:
        raise ConfigError(
            f"split {split!r}: expected NAME or NAME[start:stop] with integers, e.g. train[:300]"
        )
    start, stop = (int(v) if v else None for v in (match["start"], match["stop"]))
    return match["name"], slice(start, stop)

"""The dataset base class: layout checks, image/label reading, id mapping and per-item checks.

Representation (one for every dataset):

* without a transform, ``image`` is an H x W x 3 ``uint8`` RGB numpy array and ``mask`` an
  H x W ``int64`` numpy array of train ids (``0..K-1``, 255 = ignore);
* with the standard transforms (:mod:`ladseg.data.transforms`), ``image`` is a float32
  3 x H x W normalised tensor and ``mask`` an int64 H x W tensor.

Bad data is reported, never dropped or clipped: a missing folder or list file, an empty split,
an unreadable image, a mask whose size differs from its image and label ids outside
``[0, K) + {255}`` all raise :class:`ladseg.errors.DatasetError` naming the file. Files are read
by :mod:`ladseg.data.images` (as displayed: EXIF orientation, 16-bit scaled, a pixel limit).

``DATASETS`` (the registry) lives here beside the base class; :mod:`ladseg.data.datasets` and
:mod:`ladseg.data.embedded` register the datasets.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from torch.utils.data import Dataset

from ladseg.data.classes import IGNORE_INDEX, identity_table
from ladseg.data.images import (
    PIXEL_LIMIT_ENV,
    broken_link,
    colorize,
    map_label,
    read_image,
    read_png_label,
    to_rgb8,
)
from ladseg.errors import ConfigError, DatasetError
from ladseg.registry import Registry

# The readers are part of this module's interface too (``ladseg predict`` and the API read images
# with them); they live in ladseg.data.images.
__all__ = [
    "DATASETS",
    "IMAGE_EXTENSIONS",
    "PIXEL_LIMIT_ENV",
    "Sample",
    "SegDataset",
    "build_dataset",
    "collect_missing_files",
    "colorize",
    "parse_split_slice",
    "read_image",
    "to_rgb8",
]

DATASETS: Registry[SegDataset] = Registry("dataset")
#: image files a dataset folder lists (a TIFF may hold 16-bit or float RGB: read_image reads it)
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp")
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
    #: the colours the dataset's files declare (a folder's ``palette.txt``): palette labels must agree
    declared_palette: np.ndarray | None = None
    declared_palette_name: str = "palette.txt"
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
        return read_png_label(path, self.declared_palette, self.declared_palette_name)

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
        problem = broken_link(path)
        if problem:  # say why it cannot be read: not "missing" alone
            what = f"{what} ({problem})"
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
        an image without a mask is an error, not a silent skip, and so is an image name that is a
        symbolic link loop or a dangling link.
        """
        self.require(image_dir, "image folder")
        self.require(mask_dir, "label folder")
        samples = []
        for image in sorted(image_dir.glob(pattern)):
            if image.suffix.lower() not in IMAGE_EXTENSIONS:
                continue
            stem = image.stem
            if image_suffix:
                if not stem.endswith(image_suffix):
                    continue
                stem = stem[: -len(image_suffix)]
            if not image.is_file():  # a folder, or a symbolic link loop / dangling link: that is reported
                if broken_link(image):
                    self.has_item_file(image, "image")  # raises, or records it for check-data
                continue
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

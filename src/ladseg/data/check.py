"""Scan a dataset split once: bad files, label ids found on disk, class pixel frequencies.

Training stops at the first bad item it meets (a :class:`~ladseg.errors.DatasetError`), possibly
hours in; ``ladseg check-data`` reads every image and label up front and lists *all* problems:
unreadable or truncated files, labels whose size differs from their image, and label ids that
are neither a class of the dataset nor ignore (255). The pixel counts per class show class
imbalance and classes that never occur.
"""

from __future__ import annotations

from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from tqdm import tqdm

from ladseg.data.base import SegDataset
from ladseg.data.classes import IGNORE_INDEX
from ladseg.errors import DatasetError, PaletteMismatch

MAX_IDS_SHOWN = 20


@dataclass
class BadFile:
    """One problem with one file: ``kind`` is ``unreadable``, ``size``, ``ids`` or ``palette`` (a palette
    label whose colours disagree with the dataset's ``palette.txt``)."""

    path: str
    kind: str
    problem: str


@dataclass
class ItemScan:
    """What one (image, label) pair holds; ``raw_counts[i]`` = pixels with on-disk id ``i``."""

    bad: list[BadFile] = field(default_factory=list)
    raw_counts: dict[int, int] = field(default_factory=dict)


@dataclass
class SplitReport:
    """The result of scanning one split."""

    dataset: str
    split: str
    root: str
    items: int
    classes: tuple[str, ...]
    raw_ids: dict[int, int]  # on-disk id -> pixels
    train_ids: dict[int, int]  # on-disk id -> train id (255 = ignore), for the ids found
    class_pixels: list[int]
    class_images: list[int]
    ignore_pixels: int
    bad: list[BadFile]

    def to_dict(self) -> dict[str, Any]:
        labelled = sum(self.class_pixels)
        return {
            "dataset": self.dataset,
            "split": self.split,
            "root": self.root,
            "items": self.items,
            "bad_files": [vars(b) for b in self.bad],
            "label_ids": {
                str(k): {"pixels": v, "train_id": self.train_ids[k]} for k, v in self.raw_ids.items()
            },
            "classes": [
                {
                    "id": i,
                    "name": name,
                    "pixels": self.class_pixels[i],
                    "images": self.class_images[i],
                    "share": self.class_pixels[i] / labelled if labelled else 0.0,
                }
                for i, name in enumerate(self.classes)
            ],  # fmt: skip
            "ignore_pixels": self.ignore_pixels,
        }


def _count_ids(raw: np.ndarray) -> dict[int, int]:
    """Pixels per raw id (bincount for ordinary non-negative ids, unique otherwise)."""
    flat = raw.ravel()
    if flat.size and 0 <= int(flat.min()) and int(flat.max()) < 1 << 16:
        counts = np.bincount(flat)
        ids = np.flatnonzero(counts)
        return {int(i): int(counts[i]) for i in ids}
    ids, counts = np.unique(flat, return_counts=True)
    return {int(i): int(c) for i, c in zip(ids, counts, strict=True)}


def scan_item(dataset: SegDataset, index: int) -> ItemScan:
    """Read item ``index`` fully and collect every problem instead of raising at the first."""
    sample = dataset.samples[index]
    out = ItemScan()
    image = raw = None
    try:
        image = dataset.load_image(index)
    except DatasetError as exc:
        out.bad.append(BadFile(str(sample.image), "unreadable", str(exc)))
    try:
        raw = dataset.read_label(sample.mask)
        if raw.ndim != 2:
            raise DatasetError(f"label {sample.mask} has shape {raw.shape}; expected a 2-D H x W id map")
    except DatasetError as exc:
        kind = "palette" if isinstance(exc, PaletteMismatch) else "unreadable"
        out.bad.append(BadFile(str(sample.mask), kind, str(exc)))
        raw = None
    if raw is None:
        return out
    if image is not None and image.shape[:2] != raw.shape:
        out.bad.append(BadFile(
            str(sample.mask), "size",
            f"label is {raw.shape[1]}x{raw.shape[0]} (WxH) but its image {sample.image} is "
            f"{image.shape[1]}x{image.shape[0]}",
        ))  # fmt: skip
    out.raw_counts = _count_ids(raw)
    table = dataset.label_table
    invalid = [i for i in out.raw_counts if i < 0 or i >= len(table) or table[i] < 0]
    if invalid:
        shown = ", ".join(map(str, invalid[:MAX_IDS_SHOWN])) + (
            " ..." if len(invalid) > MAX_IDS_SHOWN else ""
        )
        out.bad.append(BadFile(
            str(sample.mask), "ids",
            f"ids [{shown}] are not valid ({dataset.num_classes} classes: on-disk ids must map to "
            f"0..{dataset.num_classes - 1} or {IGNORE_INDEX} = ignore)",
        ))  # fmt: skip
    return out


def scan_dataset(dataset: SegDataset, name: str = "", workers: int = 0, progress: bool = True) -> SplitReport:
    """Scan every item of ``dataset`` (``workers`` > 0 reads files in that many threads)."""
    k = dataset.num_classes
    table = dataset.label_table
    raw_ids: dict[int, int] = {}
    class_pixels = [0] * k
    class_images = [0] * k
    ignore = 0
    bad: list[BadFile] = []
    indices = range(len(dataset))
    bar = tqdm(total=len(dataset), desc=f"check {name or type(dataset).__name__}/{dataset.split}",
               unit="img", disable=not progress)  # fmt: skip
    with ThreadPoolExecutor(max_workers=workers) if workers > 0 else _Serial() as pool:
        for item in pool.map(lambda i: scan_item(dataset, i), indices):
            bar.update(1)
            bad.extend(item.bad)
            seen = set()
            for raw_id, count in item.raw_counts.items():
                raw_ids[raw_id] = raw_ids.get(raw_id, 0) + count
                train_id = int(table[raw_id]) if 0 <= raw_id < len(table) else -1
                if 0 <= train_id < k:
                    class_pixels[train_id] += count
                    seen.add(train_id)
                elif train_id == IGNORE_INDEX:
                    ignore += count
            for c in seen:
                class_images[c] += 1
    bar.close()
    train_ids = {i: (int(table[i]) if 0 <= i < len(table) else -1) for i in raw_ids}
    return SplitReport(
        dataset=name or type(dataset).__name__, split=dataset.split, root=str(dataset.root), items=len(dataset),
        classes=tuple(dataset.classes), raw_ids=dict(sorted(raw_ids.items())), train_ids=train_ids,
        class_pixels=class_pixels, class_images=class_images, ignore_pixels=ignore, bad=bad,
    )  # fmt: skip


class _Serial:
    """The ``map`` of an executor, in this thread (no pool for ``workers=0``)."""

    def __enter__(self) -> _Serial:
        return self

    def __exit__(self, *exc: object) -> None:
        return None

    @staticmethod
    def map(fn: Any, items: Iterable[Any]) -> Iterable[Any]:
        return map(fn, items)


def format_report(report: SplitReport) -> str:
    """A human-readable summary: counts, ids found, a class frequency table, the bad files."""
    n_bad = len(report.bad)
    lines = [
        f"{report.dataset}/{report.split} ({report.root}): {report.items} items, "
        f"{n_bad} bad file{'' if n_bad == 1 else 's'}"
    ]
    names = dict(enumerate(report.classes))
    ids = []
    for raw_id in report.raw_ids:
        train_id = report.train_ids[raw_id]
        what = "ignore" if train_id == IGNORE_INDEX else names.get(train_id, "INVALID")
        ids.append(f"{raw_id}" + (f"->{train_id}" if train_id not in (raw_id, -1) else "") + f" ({what})")
    lines.append("label ids found on disk: " + (", ".join(ids) if ids else "none"))
    labelled = sum(report.class_pixels)
    width = max([5, *(len(n) for n in report.classes)])
    lines.append(f"{'id':>4}  {'class':<{width}}  {'pixels':>12}  {'share':>7}  {'images':>9}")
    for i, name in enumerate(report.classes):
        share = 100 * report.class_pixels[i] / labelled if labelled else 0.0
        absent = "  (absent)" if report.class_pixels[i] == 0 else ""
        images = f"{report.class_images[i]}/{report.items}"
        lines.append(
            f"{i:>4}  {name:<{width}}  {report.class_pixels[i]:>12,}  {share:>6.2f}%  {images:>9}{absent}"
        )
    lines.append(f"{IGNORE_INDEX:>4}  {'ignore':<{width}}  {report.ignore_pixels:>12,}")
    if report.bad:
        lines.append(f"bad files ({len(report.bad)}):")
        lines.extend(
            f"  [{b.kind}] {b.problem}" if b.path in b.problem else f"  [{b.kind}] {b.path}: {b.problem}"
            for b in report.bad
        )
    return "\n".join(lines)

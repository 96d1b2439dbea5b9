"""Datasets (a registry), joint transforms, loaders and the embedded demo dataset.

``build_dataset(name, root, split, transform)`` returns a :class:`SegDataset` whose items are
``{"image", "mask", "name"}``: before a transform a uint8 H x W x 3 RGB array and an int64
H x W array of train ids (255 = ignore); after :func:`build_transforms` a float32 3 x H x W
normalised tensor and an int64 H x W tensor.

The registry ``DATASETS`` lives beside the base class in :mod:`ladseg.data.base`; the modules that
register datasets are imported here by name: :mod:`ladseg.data.datasets` (the benchmarks and
``folder``) and :mod:`ladseg.data.embedded`.
"""

from ladseg.data import datasets, embedded  # noqa: F401  (register the datasets)
from ladseg.data.base import DATASETS, Sample, SegDataset, build_dataset
from ladseg.data.classes import IGNORE_INDEX
from ladseg.data.embedded import (
    EMBEDDED_CLASSES,
    EMBEDDED_PALETTE,
    EmbeddedDataset,
    default_root,
    generate_embedded,
)
from ladseg.data.images import colorize, read_image
from ladseg.data.loader import build_loader, collate
from ladseg.data.transforms import NORMALIZATIONS, Normalization, build_transforms, denormalize

__all__ = [
    "DATASETS",
    "EMBEDDED_CLASSES",
    "EMBEDDED_PALETTE",
    "IGNORE_INDEX",
    "NORMALIZATIONS",
    "EmbeddedDataset",
    "Normalization",
    "Sample",
    "SegDataset",
    "build_dataset",
    "build_loader",
    "build_transforms",
    "collate",
    "colorize",
    "default_root",
    "denormalize",
    "generate_embedded",
    "read_image",
]

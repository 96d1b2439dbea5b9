"""Tiny on-disk dataset builders shared by the data tests (real file formats, a few pixels)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image


def write_image(path: Path, h: int = 12, w: int = 16, seed: int = 0, fmt: str | None = None) -> np.ndarray:
    path.parent.mkdir(parents=True, exist_ok=True)
    rgb = np.random.default_rng(seed).integers(0, 256, size=(h, w, 3), dtype=np.uint8)
    Image.fromarray(rgb).save(path, format=fmt)
    return rgb


def write_label(
    path: Path, ids: np.ndarray, palette: bool = False, mode: str = "L", colours: np.ndarray | None = None
) -> None:
    """Save ids as an 8-bit 'L' PNG, or as a palette 'P' PNG (the VOC format): random colours, or
    ``colours`` (K x 3) for the first K ids (a dataset that declares its palette checks them)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    ids = np.asarray(ids, dtype=np.uint8)
    if palette:
        img = Image.frombytes("P", (ids.shape[1], ids.shape[0]), ids.tobytes())
        table = np.random.default_rng(1).integers(0, 256, (256, 3), dtype=np.uint8)
        if colours is not None:
            table[: len(colours)] = colours
        img.putpalette(table.tobytes())
    else:
        img = Image.fromarray(ids).convert(mode)
    img.save(path)


def id_grid(values: list[int], h: int = 12, w: int = 16) -> np.ndarray:
    """An h x w map cycling through ``values`` in vertical stripes (every value appears)."""
    cols = np.array([values[i * len(values) // w] for i in range(w)])
    return np.tile(cols, (h, 1))

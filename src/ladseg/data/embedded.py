"""The embedded dataset: real photographic textures from scikit-image composed into scenes with
exact masks, generated offline in seconds (the demo's data and the quick tests' data).

Design (learnable by a small network in a few hundred CPU iterations, yet not trivial):

* 8 classes. Each object class is one *stationary* texture source (``EMBEDDED_SOURCES``: grass,
  gravel, brick, moon surface, cat fur, printed text, stained tissue) whose train and val parts look
  alike, rendered in a characteristic but jittered colour (``CLASS_TINTS``), so colour narrows the
  class down and texture decides between neighbours (grass/gravel, brick/cat, moon/text).
* ``background`` is a mix of three scene photos, softened by a blur, and may itself be two photos
  joined along a smooth curve (an edge that is no class edge).
* 2-4 object shapes (ellipses, star polygons, thresholded smooth random fields) overlap in a random
  order. Optionally (``camouflage``, a share; 0 by default) some of them take the mean colour of what
  they cover, as touching objects of similar colour do in real scenes: their edge shows only as a
  change of texture, so the label's grouping (which pixels belong together, where regions meet) says
  something the image alone says faintly, which is what a LAD teacher's label channel is for; region edges are feathered and a 1-pixel band on each side of every class boundary is
  255 = ignore, as in VOC. Mild blur and noise cover the whole image.
* Train and val crops come from disjoint parts of every source: the left 60 % of its columns
  for ``train``, the right 40 % for ``val`` (recorded per region in ``manifest.json``).

Why shapes and not photo-identity classes (such as "astronaut"): the demo must be learnable in a
few hundred CPU iterations, and photo-identity classes with per-region tints were not learned even
by a model given the answer as one-hot input channels (about 20 mIoU after 120 steps).

The result is written in the ``folder`` layout (PNG images, palette PNG masks, ``classes.txt``,
``palette.txt``) with ``embedded.json`` as the version stamp: a copy made by another generator
version or other parameters is regenerated. Deterministic given the seed: item ``i`` of a split
depends only on (seed, split, i).
"""

from __future__ import annotations

import json
import os
import shutil
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image
from scipy import ndimage

from ladseg.data.base import DATASETS
from ladseg.data.classes import IGNORE_COLOR, IGNORE_INDEX
from ladseg.data.datasets import FolderDataset
from ladseg.errors import DatasetError

GENERATOR_VERSION = 6
TRAIN_FRACTION = 0.6  # columns [0, 60 %) of every source feed train, [60 %, 100 %) feed val
STAMP = "embedded.json"

EMBEDDED_CLASSES = ("background", "grass", "gravel", "brick", "moon", "cat", "text", "tissue")
EMBEDDED_PALETTE = np.array(
    [[0, 0, 0], [60, 180, 75], [170, 170, 170], [200, 60, 40], [0, 130, 200], [245, 130, 48],
     [145, 30, 180], [240, 50, 230]],
    dtype=np.uint8,
)  # fmt: skip
# source image -> class id (all shipped inside scikit-image, no download)
EMBEDDED_SOURCES: dict[str, int] = {
    "coffee": 0, "rocket": 0, "stereo_motorcycle": 0,  # background scenes
    "grass": 1, "gravel": 2, "brick": 3, "moon": 4, "chelsea": 5, "page": 6,
    "immunohistochemistry": 7,
}  # fmt: skip
BACKGROUND_SOURCES = ("coffee", "rocket", "stereo_motorcycle")
# class id -> RGB gain applied to the texture's grey levels (None: keep the source's own colours)
CLASS_TINTS: dict[int, tuple[float, float, float] | None] = {
    1: (0.55, 0.85, 0.45), 2: (0.85, 0.78, 0.65), 3: (0.95, 0.55, 0.45), 4: (0.6, 0.72, 0.95),
    5: None, 6: (0.9, 0.9, 0.8), 7: None,
}  # fmt: skip
TINT_BRIGHTNESS = 1.25  # tints are < 1 per channel; this keeps tinted textures about as bright as the source
BACKGROUND_BLUR = 1.2  # sigma (px) softening background photos: scenes vs crisp textures
# ``camouflage``: the share of object regions drawn in the mean colour of what they cover (their own
# texture, at their own contrast): the class then shows in texture alone, and the region's edge only as a
# change of texture. Its price for the image alone, on the seed-1 tuning copy (supervised STDC1, the demo's
# 400 steps): 45.4 val mIoU at 0, 34.7 at 0.2, 26.5 at 0.4. The demo's default is 0 (the label's edges were
# read less, not more, at 0.4: README, demo results); _recipes_/demo_camouflage.yaml sets 0.4.
CAMOUFLAGE_DEMO = 0.4


def default_root(camouflage: float = 0.0) -> Path:
    """``$LADSEG_DATA/embedded`` if LADSEG_DATA is set, else ``~/.cache/ladseg/embedded``; a copy with
    camouflaged regions lives beside it (``embedded-camouflage0.4``), so neither overwrites the other."""
    base = os.environ.get("LADSEG_DATA")
    name = "embedded" if camouflage == 0 else f"embedded-camouflage{camouflage:g}"
    return (Path(base) if base else Path.home() / ".cache" / "ladseg").expanduser() / name


@dataclass
class _Source:
    name: str
    pixels: np.ndarray  # H x W x 3 uint8
    split_col: int  # first column of the val part


def _load_sources() -> dict[str, _Source]:
    from skimage import data as skdata  # lazy: only generation needs scikit-image

    sources = {}
    for name in EMBEDDED_SOURCES:
        img = getattr(skdata, name)()
        if isinstance(img, tuple):  # stereo_motorcycle -> (left, right, disparity)
            img = img[0]
        img = np.asarray(img)
        if img.ndim == 2:
            img = np.repeat(img[..., None], 3, axis=2)
        img = np.ascontiguousarray(img[..., :3].astype(np.uint8))
        sources[name] = _Source(name, img, int(round(img.shape[1] * TRAIN_FRACTION)))
    return sources


def _texture(rng: np.random.Generator, src: _Source, split: str, size: int) -> tuple[np.ndarray, list[int]]:
    """A size x size float crop of ``src``'s part for ``split`` (random zoom, rot90, flip)
    and its box ``[y0, x0, y1, x1]`` in source pixels."""
    part_x0, part_x1 = (0, src.split_col) if split == "train" else (src.split_col, src.pixels.shape[1])
    ph, pw = src.pixels.shape[0], part_x1 - part_x0
    c = min(int(size * rng.uniform(0.8, 1.25)), ph, pw)
    y0 = int(rng.integers(0, ph - c + 1))
    x0 = part_x0 + int(rng.integers(0, pw - c + 1))
    crop = Image.fromarray(src.pixels[y0 : y0 + c, x0 : x0 + c]).resize((size, size), Image.BILINEAR)
    tex = np.rot90(np.asarray(crop, dtype=np.float32) / 255.0, k=int(rng.integers(4)))
    if rng.random() < 0.5:
        tex = tex[:, ::-1]
    return np.ascontiguousarray(tex), [y0, x0, y0 + c, x0 + c]


def _appearance(
    rng: np.random.Generator, tex: np.ndarray, tint: tuple[float, float, float] | None
) -> np.ndarray:
    """Per-region colour: the class tint (or the source's own colours) with jittered gain per
    channel (+-12 %), contrast (0.8-1.2x) and brightness (0.85-1.15x), so colour is a strong but
    overlapping cue and texture still matters."""
    if tint is not None:
        luma = np.array([0.299, 0.587, 0.114], dtype=np.float32)
        tex = (tex @ luma)[..., None] * np.asarray(tint, dtype=np.float32) * TINT_BRIGHTNESS
    mean = tex.mean(axis=(0, 1))
    gain = rng.uniform(0.88, 1.12, size=3) * rng.uniform(0.85, 1.15)
    out = (tex - mean) * rng.uniform(0.8, 1.2) + mean * gain
    return np.clip(out.astype(np.float32), 0.0, 1.0)


def _shape(rng: np.random.Generator, size: int) -> np.ndarray:
    """A boolean mask: an ellipse, a star-shaped polygon or a thresholded smooth random field."""
    from skimage import draw

    for _ in range(20):
        area = rng.uniform(0.05, 0.35) * size * size
        cy, cx = rng.uniform(0.1, 0.9, size=2) * size
        kind = rng.integers(3)
        mask = np.zeros((size, size), dtype=bool)
        if kind == 0:
            ratio = rng.uniform(0.4, 1.0)
            r1 = np.sqrt(area / (np.pi * ratio))
            rr, cc = draw.ellipse(cy, cx, r1, r1 * ratio, shape=mask.shape, rotation=rng.uniform(0, np.pi))
            mask[rr, cc] = True
        elif kind == 1:
            n = int(rng.integers(3, 9))
            angles = np.sort(rng.uniform(0, 2 * np.pi, n))
            radius = np.sqrt(area / np.pi) * rng.uniform(0.6, 1.4, n)
            rr, cc = draw.polygon(
                cy + radius * np.sin(angles), cx + radius * np.cos(angles), shape=mask.shape
            )
            mask[rr, cc] = True
        else:
            low = max(8, size // 4)  # smooth at quarter resolution, then upsample (4x cheaper)
            field = ndimage.gaussian_filter(
                rng.standard_normal((low, low)), sigma=low * rng.uniform(0.05, 0.12)
            )
            field = np.asarray(Image.fromarray(field.astype(np.float32)).resize((size, size), Image.BICUBIC))
            mask = field > np.quantile(field, 1.0 - area / (size * size))
        if mask.sum() >= 0.01 * size * size:
            return mask
    return mask


def _camouflage(tex: np.ndarray, canvas: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """``tex`` recoloured to the mean colour of ``canvas`` under ``mask``: its texture (deviations
    from its own mean) stays, its colour becomes that of its surroundings."""
    return np.clip(tex - tex[mask].mean(axis=0) + canvas[mask].mean(axis=0), 0.0, 1.0)


def _paste(canvas: np.ndarray, tex: np.ndarray, mask: np.ndarray) -> None:
    """Blend ``tex`` into ``canvas`` under ``mask`` with a slightly feathered edge."""
    rows, cols = np.flatnonzero(mask.any(axis=1)), np.flatnonzero(mask.any(axis=0))
    if rows.size == 0:
        return
    box = (slice(max(rows[0] - 3, 0), rows[-1] + 4), slice(max(cols[0] - 3, 0), cols[-1] + 4))
    alpha = ndimage.gaussian_filter(mask[box].astype(np.float32), sigma=0.7)[..., None]
    canvas[box] += alpha * (tex[box] - canvas[box])


def make_scene(
    rng: np.random.Generator, sources: dict[str, _Source], split: str, size: int, camouflage: float = 0.0
) -> tuple[np.ndarray, np.ndarray, list[dict[str, Any]]]:
    """One image (uint8 H x W x 3), its mask (uint8, 255 = ignore) and its region records; each object
    region is camouflaged with probability ``camouflage`` (0 draws nothing: the v5 scenes exactly)."""
    records: list[dict[str, Any]] = []

    def region(name: str) -> np.ndarray:
        tex, box = _texture(rng, sources[name], split, size)
        label_id = EMBEDDED_SOURCES[name]
        records.append({"source": name, "label": label_id, "box": box, "camouflaged": False})
        if label_id == 0:
            return ndimage.gaussian_filter(_appearance(rng, tex, None), sigma=(BACKGROUND_BLUR,) * 2 + (0.0,))
        return _appearance(rng, tex, CLASS_TINTS[label_id])

    canvas = region(str(rng.choice(BACKGROUND_SOURCES)))
    label = np.zeros((size, size), dtype=np.uint8)
    if rng.random() < 0.5:  # a second background photo along a smooth curve: an edge that is no class edge
        _paste(canvas, region(str(rng.choice(BACKGROUND_SOURCES))), _shape(rng, size))
    class_sources = [n for n in EMBEDDED_SOURCES if EMBEDDED_SOURCES[n] > 0]
    for name in rng.choice(class_sources, size=int(rng.integers(2, 5))):
        mask = _shape(rng, size)
        tex = region(str(name))
        if camouflage > 0 and rng.random() < camouflage:
            tex = _camouflage(tex, canvas, mask)
            records[-1]["camouflaged"] = True
        _paste(canvas, tex, mask)
        label[mask] = EMBEDDED_SOURCES[str(name)]
    cross = ndimage.generate_binary_structure(2, 1)
    edge = ndimage.maximum_filter(label, footprint=cross) != ndimage.minimum_filter(label, footprint=cross)
    label[edge] = IGNORE_INDEX
    canvas = ndimage.gaussian_filter(canvas, sigma=(rng.uniform(0.0, 0.7),) * 2 + (0.0,))
    canvas += rng.normal(0.0, rng.uniform(0.0, 0.03), size=canvas.shape).astype(np.float32)
    image = (np.clip(canvas, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)
    return image, label, records


def _params(seed: int, num_train: int, num_val: int, size: int, camouflage: float) -> dict[str, Any]:
    return {
        "generator_version": GENERATOR_VERSION,
        "seed": seed,
        "num_train": num_train,
        "num_val": num_val,
        "size": size,
        "camouflage": camouflage,
        "classes": list(EMBEDDED_CLASSES),
    }


def is_current(root: Path, params: dict[str, Any]) -> bool:
    stamp = root / STAMP
    try:
        return json.loads(stamp.read_text()) == params
    except (OSError, ValueError):
        return False


def _write(out: Path, params: dict[str, Any]) -> None:
    sources = _load_sources()
    palette = np.zeros((256, 3), dtype=np.uint8)
    palette[: len(EMBEDDED_PALETTE)] = EMBEDDED_PALETTE
    palette[IGNORE_INDEX] = IGNORE_COLOR
    split_ids = {"train": 1, "val": 2}
    manifest: dict[str, Any] = {
        "sources": {
            s.name: {"shape": list(s.pixels.shape[:2]), "split_col": s.split_col} for s in sources.values()
        },
        "train_fraction": TRAIN_FRACTION,
        "items": {},
    }
    for split, count in (("train", params["num_train"]), ("val", params["num_val"])):
        (out / "images" / split).mkdir(parents=True)
        (out / "masks" / split).mkdir(parents=True)
        for i in range(count):
            rng = np.random.default_rng([params["seed"], split_ids[split], i])
            image, label, records = make_scene(rng, sources, split, params["size"], params["camouflage"])
            name = f"{split}_{i:04d}"
            Image.fromarray(image).save(out / "images" / split / f"{name}.png", compress_level=1)
            mask = Image.frombytes("P", (label.shape[1], label.shape[0]), label.tobytes())
            mask.putpalette(palette.tobytes())
            mask.save(out / "masks" / split / f"{name}.png", compress_level=1)
            manifest["items"][f"{split}/{name}"] = records
    (out / "classes.txt").write_text("\n".join(EMBEDDED_CLASSES) + "\n")
    (out / "palette.txt").write_text("\n".join(" ".join(map(str, c)) for c in EMBEDDED_PALETTE) + "\n")
    (out / "manifest.json").write_text(json.dumps(manifest))
    (out / STAMP).write_text(json.dumps(params))  # last: its presence marks a complete copy


def generate_embedded(
    root: str | Path | None = None,
    seed: int = 0,
    num_train: int = 300,
    num_val: int = 100,
    size: int = 128,
    force: bool = False,
    camouflage: float = 0.0,
) -> Path:
    """Write the embedded dataset under ``root`` (default :func:`default_root`) unless an
    up-to-date copy is there; return the root. Built in a temporary sibling folder and renamed,
    so concurrent callers never see a half-written copy. ``camouflage``: the share of object
    regions drawn in the colour of what they cover (see the module docstring)."""
    root = Path(root).expanduser() if root is not None else default_root(camouflage)
    if num_train < 1 or num_val < 1 or size < 32:
        raise DatasetError(
            f"embedded: need num_train >= 1, num_val >= 1 and size >= 32 (got {num_train}, {num_val}, {size})"
        )
    if not 0.0 <= camouflage <= 1.0:
        raise DatasetError(f"embedded: camouflage is a share of regions in [0, 1], got {camouflage}")
    params = _params(seed, num_train, num_val, size, float(camouflage))
    if not force and is_current(root, params):
        return root
    if root.exists() and any(root.iterdir()) and not (root / STAMP).exists():
        raise DatasetError(f"{root} exists and is not an embedded dataset (no {STAMP}); choose another root")
    root.parent.mkdir(parents=True, exist_ok=True)
    tmp = root.parent / f".{root.name}.tmp-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    try:
        _write(tmp, params)
        if not force and is_current(root, params):  # another process finished first
            return root
        if root.exists():
            shutil.rmtree(root)
        os.rename(tmp, root)
    except OSError:
        if not is_current(root, params):  # not a lost race with another writer: a real failure
            raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return root


@DATASETS.register("embedded")
class EmbeddedDataset(FolderDataset):
    """The generated dataset (see :mod:`ladseg.data.embedded`): splits ``train`` and ``val``,
    8 classes, 255 = ignore band. Generated under ``root`` (default :func:`default_root`) on first use;
    ``camouflage`` (config ``data.kwargs.camouflage``) draws that share of regions in their surroundings' colour.

    Layout: the ``folder`` layout plus ``embedded.json`` (version stamp) and ``manifest.json``
    (source and box of every region of every image).
    """

    def __init__(
        self,
        root: str | Path | None = None,
        split: str = "train",
        transform: Callable | None = None,
        seed: int = 0,
        num_train: int = 300,
        num_val: int = 100,
        size: int = 128,
        camouflage: float = 0.0,
    ) -> None:
        if split not in ("train", "val"):
            raise DatasetError(f"embedded: unknown split {split!r}; valid splits: train, val")
        root = generate_embedded(
            root or None, seed=seed, num_train=num_train, num_val=num_val, size=size, camouflage=camouflage
        )
        super().__init__(root, split, transform)

"""Inference modes: whole image, sliding window, and multi-scale (+ flip).

Every mode takes a network returning :class:`~ladseg.models.SegOutput` and an N x C x H x W
input and returns N x K x H x W scores at the input size:

- ``whole``: one forward pass, logits up-sampled to the input size.
- ``slide``: crops of ``crop_size`` every ``stride`` pixels (the input is zero-padded at the
  bottom/right when smaller than a crop); overlapping logits are summed and divided by how
  many windows covered each pixel (mmsegmentation's slide inference).
- ``multiscale``: the input resized by each scale (and horizontally flipped when ``flip``),
  each run as ``whole`` or ``slide``; by default the **softmax probabilities** are averaged at the
  input size (``average="probs"``, sizes rounded), so scales with larger logit magnitudes do not
  dominate. ``average="logits", rounding="floor"`` is the reference's (CIRKD/LAD ``eval.py``):
  ``F.interpolate(scale_factor=s)`` floors the scaled size, and the up-sampled logits (flip
  averaged with the unflipped ones) are averaged. The argmax of the two can differ where scales
  disagree.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ladseg.engine.inference_settings import (
    DEFAULT_SCALES,
    MIN_SCALE,
    MODES,
    MULTISCALE_AVERAGES,
    MULTISCALE_ROUNDINGS,
    InferenceSettings,
)
from ladseg.models.segmentor import ALIGN_CORNERS, resize_logits
from ladseg.registry import Registry

#: one function per name of :data:`~ladseg.engine.inference_settings.MODES`
INFERENCE_MODES: Registry[Callable[..., Tensor]] = Registry("inference mode")

__all__ = [
    "DEFAULT_SCALES",
    "INFERENCE_MODES",
    "MIN_SCALE",
    "MODES",
    "InferenceSettings",
    "infer",
    "multiscale_inference",
    "slide_inference",
    "whole_inference",
]


def _pair(value: int | Sequence[int]) -> tuple[int, int]:
    if isinstance(value, int):
        return value, value
    h, w = value
    return int(h), int(w)


@INFERENCE_MODES.register("whole")
@torch.no_grad()
def whole_inference(model: nn.Module, x: Tensor, **_: object) -> Tensor:
    """Logits of one forward pass, up-sampled to the input size."""
    return resize_logits(model(x).logits.float(), x.shape[-2:])


@INFERENCE_MODES.register("slide")
@torch.no_grad()
def slide_inference(
    model: nn.Module,
    x: Tensor,
    crop_size: int | Sequence[int] = 512,
    stride: int | Sequence[int] | None = None,
    max_pixels_per_pass: int = 2**22,
    **_: object,
) -> Tensor:
    """Count-normalised sum of window logits; ``stride`` defaults to 2/3 of the crop.

    Windows are stacked along the batch and run together, up to ``max_pixels_per_pass`` input
    pixels per forward pass: many small windows cost one pass instead of one each (the demo's
    validation, 64-px windows on 100 images of 128 px: 10.9 s -> 5.6 s on 2 CPU cores), while large
    windows on large images still run a few at a time.
    """
    ch, cw = _pair(crop_size)
    sh, sw = _pair(stride) if stride is not None else (max(1, 2 * ch // 3), max(1, 2 * cw // 3))
    n, h, w = x.shape[0], *x.shape[-2:]
    ph, pw = max(h, ch), max(w, cw)
    if (ph, pw) != (h, w):
        x = F.pad(x, (0, pw - w, 0, ph - h))
    rows = (max(ph - ch + sh - 1, 0)) // sh + 1
    cols = (max(pw - cw + sw - 1, 0)) // sw + 1
    boxes = []
    for r in range(rows):
        for c in range(cols):
            y2, x2 = min(r * sh + ch, ph), min(c * sw + cw, pw)
            boxes.append((y2 - ch, y2, x2 - cw, x2))
    per_pass = max(1, max_pixels_per_pass // (n * ch * cw))
    scores: Tensor | None = None
    count = torch.zeros(1, 1, ph, pw, device=x.device)
    for start in range(0, len(boxes), per_pass):
        chunk = boxes[start : start + per_pass]
        crops = torch.cat([x[..., y1:y2, x1:x2] for y1, y2, x1, x2 in chunk])
        logits = resize_logits(model(crops).logits.float(), (ch, cw)).split(n)
        if scores is None:
            scores = x.new_zeros(n, logits[0].shape[1], ph, pw, dtype=torch.float32)
        for (y1, y2, x1, x2), window in zip(chunk, logits, strict=True):
            scores[..., y1:y2, x1:x2] += window
            count[..., y1:y2, x1:x2] += 1
    assert scores is not None
    return (scores / count)[..., :h, :w]


@INFERENCE_MODES.register("multiscale")
@torch.no_grad()
def multiscale_inference(
    model: nn.Module,
    x: Tensor,
    scales: Sequence[float] = DEFAULT_SCALES,
    flip: bool = False,
    scale_mode: str = "whole",
    average: str = "probs",
    rounding: str = "round",
    **kwargs: object,
) -> Tensor:
    """Mean over scales (and flips), each run with ``scale_mode``, of the softmax probabilities
    (``average="probs"``) or of the logits (``"logits"``, the reference's); scaled sizes are
    ``round``-ed or ``floor``-ed (the reference's)."""
    if average not in MULTISCALE_AVERAGES:
        raise ValueError(f"multiscale average must be one of {MULTISCALE_AVERAGES}, got {average!r}")
    if rounding not in MULTISCALE_ROUNDINGS:
        raise ValueError(f"multiscale rounding must be one of {MULTISCALE_ROUNDINGS}, got {rounding!r}")
    base = INFERENCE_MODES.get(scale_mode)
    h, w = x.shape[-2:]
    to_int = round if rounding == "round" else math.floor
    total: Tensor | None = None
    n = 0
    for s in scales:
        size = (max(1, to_int(h * s)), max(1, to_int(w * s)))
        xs = (
            x if size == (h, w) else F.interpolate(x, size=size, mode="bilinear", align_corners=ALIGN_CORNERS)
        )
        for flipped in (False, True) if flip else (False,):
            inp = xs.flip(-1) if flipped else xs
            if scale_mode == "whole":  # head resolution -> input size in one resampling, as the reference
                logits = model(inp).logits.float()
            else:
                logits = base(model, inp, **kwargs)
            if flipped:
                logits = logits.flip(-1)
            scores = resize_logits(logits, (h, w))
            if average == "probs":
                scores = scores.softmax(1)
            total = scores if total is None else total + scores
            n += 1
    if total is None:
        raise ValueError("multiscale inference needs at least one scale")
    return total / n


def infer(model: nn.Module, x: Tensor, mode: str = "whole", **kwargs: object) -> Tensor:
    """Scores N x K x H x W at the input size with the named mode (see the module docstring)."""
    return INFERENCE_MODES.build(mode, model, x, **kwargs)

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
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ladseg.errors import LadsegError
from ladseg.models.segmentor import ALIGN_CORNERS, resize_logits
from ladseg.registry import Registry

INFERENCE_MODES: Registry[Callable[..., Tensor]] = Registry("inference mode")
MULTISCALE_AVERAGES = ("probs", "logits")
MULTISCALE_ROUNDINGS = ("round", "floor")


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
    scales: Sequence[float] = (0.5, 0.75, 1.0, 1.25, 1.5, 1.75),
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


#: the smallest multiscale factor: below it an image keeps too few pixels to segment (1000 px -> 100)
MIN_SCALE = 0.1


def check_scales(scales: Sequence[float], what: str) -> None:
    """Multiscale factors are finite and >= :data:`MIN_SCALE` (0.001 would shrink a photo to a pixel)."""
    bad = [s for s in scales if not (math.isfinite(s) and s >= MIN_SCALE)]
    if not scales or bad:
        raise LadsegError(
            f"{what} {' '.join(f'{s:g}' for s in scales)}: each scale must be a number >= {MIN_SCALE:g} "
            f"(got {', '.join(f'{s:g}' for s in bad) or 'none'}; common: 0.5 0.75 1.0 1.25 1.5 1.75)"
        )


def infer(model: nn.Module, x: Tensor, mode: str = "whole", **kwargs: object) -> Tensor:
    """Scores N x K x H x W at the input size with the named mode (see the module docstring)."""
    return INFERENCE_MODES.build(mode, model, x, **kwargs)


@dataclass
class InferenceSettings:
    """One inference mode and its options: the single place where they become :func:`infer` keywords.

    ``ladseg eval``, ``ladseg predict``, validation and the Python API all go through
    :meth:`resolve` (options given, else a saved ``eval`` section, else defaults) and :meth:`kwargs`.
    """

    mode: str = "whole"
    crop_size: list[int] | None = None  # sliding window; needed by slide (and multiscale over slide)
    stride: list[int] | None = None  # None: 2/3 of the window
    scales: list[float] = field(default_factory=lambda: [1.0])
    flip: bool = False
    scale_mode: str = "whole"
    average: str = "probs"
    rounding: str = "round"

    @property
    def slides(self) -> bool:
        return self.mode == "slide" or (self.mode == "multiscale" and self.scale_mode == "slide")

    @classmethod
    def resolve(
        cls,
        saved_eval: Mapping[str, Any] | None = None,
        saved_data: Mapping[str, Any] | None = None,
        **given: Any,
    ) -> InferenceSettings:
        """Options ``given`` (None = not given; ``flip`` adds to the saved one), else the saved ``eval``
        section (a config's, or a checkpoint's training config), else the defaults; the window
        defaults to ``data.crop_size``."""
        saved = {k: v for k, v in (saved_eval or {}).items() if v is not None}
        chosen = {**saved, **{k: v for k, v in given.items() if v is not None and k != "flip"}}
        crop = chosen.get("crop_size") or (saved_data or {}).get("crop_size")
        return cls(
            mode=chosen.get("mode", "whole"),
            crop_size=[int(c) for c in crop] if crop else None,
            stride=[int(s) for s in chosen["stride"]] if chosen.get("stride") else None,
            scales=[float(s) for s in chosen.get("scales") or [1.0]],
            flip=bool(given.get("flip")) or bool(saved.get("flip")),
            scale_mode=chosen.get("scale_mode", "whole"),
            average=chosen.get("average", "probs"),
            rounding=chosen.get("rounding", "round"),
        )

    def kwargs(self) -> dict[str, Any]:
        """Keyword arguments of :func:`infer` for this mode; a window that cannot work is a LadsegError."""
        if self.mode not in INFERENCE_MODES:
            raise LadsegError(
                f"unknown inference mode {self.mode!r}; valid: {', '.join(INFERENCE_MODES.names())}"
            )
        check_scales(self.scales, "--scales")  # given for another mode too: a bad value is still a mistake
        out: dict[str, Any] = {}
        if self.slides:
            if not self.crop_size:
                raise LadsegError("slide inference needs a window: --crop-size H W (crop_size)")
            if self.stride and any(s > c for s, c in zip(self.stride, self.crop_size, strict=True)):
                raise LadsegError(
                    f"--stride {' '.join(map(str, self.stride))} is larger than the window "
                    f"{' '.join(map(str, self.crop_size))}: the pixels between two windows would get no prediction"
                )
            out.update(crop_size=list(self.crop_size), stride=list(self.stride) if self.stride else None)
        if self.mode == "multiscale":
            out.update(
                scales=list(self.scales), flip=self.flip, scale_mode=self.scale_mode,
                average=self.average, rounding=self.rounding,
            )  # fmt: skip
        return out

    def describe(self) -> str:
        """``whole``, ``multiscale scales=[...] +flip``: how a report names the mode."""
        scales = f" scales={self.scales}" if self.mode == "multiscale" else ""
        return self.mode + scales + (" +flip" if self.flip else "")

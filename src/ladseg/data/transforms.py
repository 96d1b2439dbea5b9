"""Joint image/mask transforms on torchvision.transforms.v2 (image as ``tv_tensors.Image``,
label as ``tv_tensors.Mask``, so geometry is shared and masks always use nearest sampling).

Training follows the field's recipe (mmsegmentation / CIRKD): random rescale of the whole image,
pad to the crop (image: the mean colour, 0 after normalisation, as the reference; mask 255), random crop, horizontal flip, optional photometric jitter,
normalise. Validation only normalises; evaluation deals with sizes (whole / sliding window).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torchvision import tv_tensors
from torchvision.transforms import v2
from torchvision.transforms.v2 import functional as F

from ladseg.data.classes import IGNORE_INDEX
from ladseg.errors import ConfigError


@dataclass(frozen=True)
class Normalization:
    """How pixels become network input: ``(x[channels] - mean) / std`` on 0-255 pixel values.

    ``bgr`` reverses the channel order first.
    """

    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    bgr: bool

    @property
    def label_scale(self) -> float:
        """The scale of LAD's label channel that matches this input range.

        The reference multiplies its codes by 100 on mean-subtracted 0-255 input (std 1); the same
        ratio of label to image is 100 / (mean std in 0-255 units) here: 100 for the reference's
        input, about 1.74 for ImageNet mean/std (std about 57.6 pixel values).
        """
        return 100.0 / (sum(self.std) / 3)


NORMALIZATIONS: dict[str, Normalization] = {
    # RGB / 255 then ImageNet mean/std, written in 0-255 units (mean*255, std*255).
    "imagenet": Normalization(
        mean=(0.485 * 255, 0.456 * 255, 0.406 * 255),
        std=(0.229 * 255, 0.224 * 255, 0.225 * 255),
        bgr=False,
    ),
    # The reference (Caffe-style) input: BGR 0-255 minus the per-channel mean, no std.
    "reference_bgr": Normalization(
        mean=(104.00698793, 116.66876762, 122.67891434),
        std=(1.0, 1.0, 1.0),
        bgr=True,
    ),
}


def get_normalization(name: str) -> Normalization:
    if name not in NORMALIZATIONS:
        raise ConfigError(f"unknown normalization {name!r}; valid: {', '.join(NORMALIZATIONS)}")
    return NORMALIZATIONS[name]


def renormalize(x: torch.Tensor, source: str, target: str) -> torch.Tensor:
    """Convert an N x 3 x H x W batch normalised as ``source`` into ``target``'s input, in torch.

    Exact up to float rounding: undo ``source`` (back to 0-255 pixels), swap RGB/BGR when the two
    orders differ, apply ``target``. Runs on ``x``'s device and dtype; a no-op when the names agree.
    Used where one network of a run reads another input than the batch's (a reference teacher,
    BGR 0-255 minus the mean, distilling into an ImageNet-normalised student).
    """
    if source == target:
        return x
    src, dst = get_normalization(source), get_normalization(target)
    if x.dim() != 4 or x.shape[1] != 3:
        raise ValueError(f"renormalize expects an N x 3 x H x W image batch, got shape {tuple(x.shape)}")

    def vec(values: tuple[float, float, float]) -> torch.Tensor:
        return torch.tensor(values, device=x.device, dtype=torch.float32).view(1, 3, 1, 1)

    pixels = x.float() * vec(src.std) + vec(src.mean)
    if src.bgr != dst.bgr:
        pixels = pixels.flip(1)
    return ((pixels - vec(dst.mean)) / vec(dst.std)).to(x.dtype)


PAD_MODES = ("mean", "black")
_PAD_KEY = "_pad"  # marks padded pixels between the crop and Normalize (removed there)


class PadToCrop:
    """Pad image and mask at the bottom and right up to the crop size, as the reference does.

    ``mean`` (default): the padding becomes exactly 0 after normalisation, i.e. the mean colour,
    because the reference pads after subtracting its mean (``cv2.copyMakeBorder(..., value=0)`` on
    mean-subtracted input); a marker mask travels through crop and flip and :class:`Normalize` zeroes
    the marked pixels. ``black``: pixel value 0 before normalising (about -2 after ImageNet
    normalisation; ladseg's earlier default). The label is padded with ignore (255) in both.
    """

    def __init__(self, crop: tuple[int, int], mode: str = "mean") -> None:
        if mode not in PAD_MODES:
            raise ConfigError(f"pad mode must be one of {PAD_MODES}, got {mode!r}")
        self.crop, self.mode = crop, mode

    def __call__(self, sample: dict[str, Any]) -> dict[str, Any]:
        h, w = sample["image"].shape[-2:]
        pad_h, pad_w = max(self.crop[0] - h, 0), max(self.crop[1] - w, 0)
        out = dict(sample)
        if self.mode == "mean":
            out[_PAD_KEY] = tv_tensors.Mask(torch.zeros((h, w), dtype=torch.uint8))
        if not (pad_h or pad_w):
            return out
        padding = [0, 0, pad_w, pad_h]  # left, top, right, bottom
        out["image"] = F.pad(sample["image"], padding, fill=0)
        if "mask" in sample:
            out["mask"] = F.pad(sample["mask"], padding, fill=IGNORE_INDEX)
        if _PAD_KEY in out:
            out[_PAD_KEY] = F.pad(out[_PAD_KEY], padding, fill=1)
        return out


class ToTVTensors:
    """numpy / tensor ``image`` (H x W x 3 uint8) and ``mask`` (H x W) -> tv_tensors Image / Mask."""

    def __call__(self, sample: dict[str, Any]) -> dict[str, Any]:
        out = dict(sample)
        image = sample["image"]
        if isinstance(image, np.ndarray):
            image = torch.from_numpy(np.ascontiguousarray(image)).permute(2, 0, 1)
        out["image"] = tv_tensors.Image(image)
        if "mask" in sample and sample["mask"] is not None:
            mask = sample["mask"]
            mask = torch.from_numpy(np.ascontiguousarray(mask)) if isinstance(mask, np.ndarray) else mask
            out["mask"] = tv_tensors.Mask(mask.to(torch.int64))
        return out


class RandomScale:
    """Resize the whole sample by a ratio drawn uniformly from ``scale_range`` (torch RNG)."""

    def __init__(self, scale_range: tuple[float, float]) -> None:
        lo, hi = scale_range
        if not 0 < lo <= hi:
            raise ConfigError(f"scale_range must satisfy 0 < low <= high, got {scale_range}")
        self.scale_range = (float(lo), float(hi))

    def __call__(self, sample: dict[str, Any]) -> dict[str, Any]:
        lo, hi = self.scale_range
        ratio = lo if lo == hi else lo + (hi - lo) * float(torch.rand(()))  # a fixed ratio draws nothing
        h, w = sample["image"].shape[-2:]
        size = [max(1, round(h * ratio)), max(1, round(w * ratio))]
        out = dict(sample)
        out["image"] = F.resize(
            sample["image"], size, interpolation=v2.InterpolationMode.BILINEAR, antialias=True
        )
        if "mask" in sample:
            out["mask"] = F.resize(sample["mask"], size, interpolation=v2.InterpolationMode.NEAREST)
        return out


class Normalize:
    """uint8 image -> float32 ``(x - mean) / std`` (after an optional RGB -> BGR flip)."""

    def __init__(self, name: str) -> None:
        self.norm = get_normalization(name)
        self.mean = torch.tensor(self.norm.mean).view(3, 1, 1)
        self.std = torch.tensor(self.norm.std).view(3, 1, 1)

    def __call__(self, sample: dict[str, Any]) -> dict[str, Any]:
        x = sample["image"].as_subclass(torch.Tensor).to(torch.float32)
        if self.norm.bgr:
            x = x.flip(0)
        out = dict(sample)
        x = (x - self.mean) / self.std
        pad = out.pop(_PAD_KEY, None)
        if pad is not None:  # mean-colour padding: exactly 0 after normalisation
            x = x.masked_fill(pad.as_subclass(torch.Tensor).bool(), 0.0)
        out["image"] = x.contiguous()
        if "mask" in sample:
            out["mask"] = sample["mask"].as_subclass(torch.Tensor).to(torch.int64).contiguous()
        return out


def build_transforms(
    train: bool,
    crop_size: tuple[int, int] | None = None,
    scale_range: tuple[float, float] = (0.5, 2.0),
    flip: bool = True,
    photometric: bool = False,
    normalize: str = "imagenet",
    resize_ratio: float = 1.0,
    pad: str = "mean",
) -> Callable[[dict], dict]:
    """The standard pipeline on a sample dict; ``crop_size`` is (H, W) and required for training.

    ``resize_ratio`` resizes every sample (image bilinear, mask nearest) before the rest, in training
    (where it multiplies the random scale) and evaluation alike, so a model trained on half-size
    images is also scored on half-size images and labels.

    ``pad``: how training crops are padded where the rescaled image is smaller than the crop:
    ``mean`` (the reference: 0 after normalisation) or ``black`` (see :class:`PadToCrop`); the
    label is padded with ignore either way.

    ``photometric`` adds colour jitter in the spirit of mmsegmentation's PhotoMetricDistortion
    (brightness, contrast, saturation, hue); it touches the image only.
    """
    steps: list[Callable] = [ToTVTensors()]
    if train:
        if crop_size is None:
            raise ConfigError("build_transforms(train=True) needs crop_size=(H, W)")
        crop = (int(crop_size[0]), int(crop_size[1]))
        steps.append(RandomScale((scale_range[0] * resize_ratio, scale_range[1] * resize_ratio)))
        steps.append(PadToCrop(crop, pad))
        steps.append(v2.RandomCrop(crop))
        if flip:
            steps.append(v2.RandomHorizontalFlip(p=0.5))
        if photometric:
            steps.append(v2.ColorJitter(brightness=0.125, contrast=0.5, saturation=0.5, hue=0.05))
    elif resize_ratio != 1.0:
        steps.append(RandomScale((resize_ratio, resize_ratio)))  # a fixed ratio: not random
    steps.append(Normalize(normalize))
    return v2.Compose(steps)


def denormalize(image: torch.Tensor, name: str = "imagenet") -> np.ndarray:
    """Undo :class:`Normalize` for display: 3 x H x W float tensor -> H x W x 3 uint8 RGB."""
    norm = get_normalization(name)
    x = image.detach().to("cpu", torch.float32)
    if x.ndim != 3 or x.shape[0] != 3:
        raise ValueError(f"denormalize expects a 3 x H x W tensor, got shape {tuple(x.shape)}")
    x = x * torch.tensor(norm.std).view(3, 1, 1) + torch.tensor(norm.mean).view(3, 1, 1)
    if norm.bgr:
        x = x.flip(0)
    return x.round().clamp(0, 255).to(torch.uint8).permute(1, 2, 0).numpy()

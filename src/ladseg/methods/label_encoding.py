"""The LAD label channel(s): the privileged input that makes a small teacher strong.

Reference encoding (Qiu et al., "Make a Strong Teacher with Label Assistance", arXiv 2407.13254):
ignore pixels become one more class (index K = num_classes); every class of every image gets a code
``c ~ N(0, 1)`` drawn afresh per image, per class and per call, so the channel says which pixels
belong together (regions, boundaries) but not which class they are. For distillation (and teacher
evaluation) the codes are fixed and evenly spaced, ``c_k = (k - (K+1)//2) / 10`` for k = 0..K
(VOC: (k - 11) / 10); beyond 21 classes they are N(0, 1) quantiles instead (see :func:`fixed_codes`).
Per-pixel noise N(0, std) is added and the result multiplied by ``scale``
(the label scale of the input normalisation: about 1.74 for ImageNet mean/std, 100 for the
reference's BGR mean-subtracted input).

Everything is vectorised over the batch (one ``randn`` of N x (K+1) codes, one gather), gradient-free
and device-agnostic. Optional label corruptions (ablations, off by default) run before encoding.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from ladseg.errors import ConfigError
from ladseg.losses.base import IGNORE_INDEX
from ladseg.registry import Registry
from ladseg.schema import from_mapping

#: kind -> fn(label in [0, K] with K = ignore, num_classes, fixed, generator) -> N x C x H x W codes.
ENCODINGS: Registry[Tensor] = Registry("label encoding")


@dataclass(frozen=True)
class EncodingInfo:
    """What an encoding kind is, beside its function: one record per kind, made by :func:`encoding`."""

    channels: Callable[[int], int]  # num_classes -> number of label channels
    reveals_identity: bool  # whether the channels tell a pixel's class (one-hot does: an upper bound)
    description: str  # one line for reports


#: kind -> its :class:`EncodingInfo` (filled with ENCODINGS by :func:`encoding`)
ENCODING_INFO: dict[str, EncodingInfo] = {}


def encoding(
    name: str, channels: Callable[[int], int], reveals_identity: bool, description: str
) -> Callable[[Callable[..., Tensor]], Callable[..., Tensor]]:
    """Register an encoding function and its record: adding a kind is this decorator and its test."""

    def deco(fn: Callable[..., Tensor]) -> Callable[..., Tensor]:
        ENCODINGS.register(name)(fn)
        ENCODING_INFO[name] = EncodingInfo(channels, reveals_identity, description)
        return fn

    return deco


def channels(kind: str, num_classes: int) -> int:
    """Number of label channels an encoding adds (a teacher's ``in_channels`` is 3 + this)."""
    ENCODINGS.get(kind)  # unknown kind -> KeyError listing valid kinds
    return ENCODING_INFO[kind].channels(num_classes)


#: up to this many classes the reference's evenly spaced codes stay inside N(0, 1)'s range (VOC: 21)
REFERENCE_CODES_MAX_CLASSES = 21
_GOLDEN = (5**0.5 - 1) / 2


def fixed_codes(num_classes: int, device: torch.device | str | None = None) -> Tensor:
    """The fixed distillation codes for k = 0..K (K = num_classes, the ignore "class").

    Up to 21 classes: the reference's evenly spaced ``(k - (K+1)//2) / 10`` exactly (VOC: (k - 11) / 10,
    in [-1.1, 1.0]). Beyond, that rule leaves the range the teacher was trained on (its codes are
    N(0, 1) draws): ADE20K's 150 classes reach +-7.5, COCO-Stuff's 171 +-8.6. There the K + 1 codes
    are the N(0, 1) quantiles ``Phi^-1((j + 0.5) / (K + 1))`` (within +-2.8 for 171 classes, +-3.3 for 1000), and
    class k takes the quantile of rank ``frac(k * 0.618...)`` (golden-ratio order), so classes with
    neighbouring ids, often related in those datasets, get codes far apart (consecutive ids differ by
    0.97 or more for 150 and 171 classes).
    """
    count = num_classes + 1
    k = torch.arange(count, device=device, dtype=torch.float64)
    if num_classes <= REFERENCE_CODES_MAX_CLASSES:
        return ((k - count // 2) / 10.0).float()
    quantiles = (2.0**0.5) * torch.erfinv(2.0 * (k + 0.5) / count - 1.0)  # ascending N(0, 1) quantiles
    rank = torch.argsort(torch.argsort(torch.frac(k * _GOLDEN)))  # golden-ratio order of the ids
    return quantiles[rank].float()


def _randn(shape: tuple[int, ...], like: Tensor, generator: torch.Generator | None) -> Tensor:
    return torch.randn(shape, generator=generator, device=like.device, dtype=torch.float32)


def _rand(shape: tuple[int, ...], like: Tensor, generator: torch.Generator | None) -> Tensor:
    return torch.rand(shape, generator=generator, device=like.device, dtype=torch.float32)


@encoding(
    "random_codes", lambda k: 1, False,
    "the reference's: per-image random codes that say which pixels belong together, not their class",
)  # fmt: skip
def _random_codes(label: Tensor, num_classes: int, fixed: bool, generator: torch.Generator | None) -> Tensor:
    n = label.shape[0]
    if fixed:
        codes = fixed_codes(num_classes, label.device).expand(n, -1)
    else:
        codes = _randn((n, num_classes + 1), label, generator)  # one code per image and class
    return codes.gather(1, label.flatten(1)).view(n, 1, *label.shape[1:])


@encoding(
    "onehot", lambda k: k + 1, True, "an ablation: one channel per class, so the label gives the class away"
)
def _onehot(label: Tensor, num_classes: int, fixed: bool, generator: torch.Generator | None) -> Tensor:
    # K + 1 channels: one per class and one for ignore (the class identity is given away: an ablation).
    return F.one_hot(label, num_classes + 1).permute(0, 3, 1, 2).float()


#: channels of a ``random_vectors`` code: enough for a few dozen classes to stay far apart
VECTOR_CHANNELS = 8
_FIXED_VECTOR_SEED = 20240718  # the fixed vectors of distillation: one draw, the same on every machine


@encoding(
    "random_vectors", lambda k: VECTOR_CHANNELS, False,
    f"a random {VECTOR_CHANNELS}-d vector per image and class: which pixels belong together, not their class",
)  # fmt: skip
def _random_vectors(
    label: Tensor, num_classes: int, fixed: bool, generator: torch.Generator | None
) -> Tensor:
    # Identity-free like the reference's scalar codes, but an 8-d N(0, I) vector per image and class:
    # two regions' codes almost never come close, so "same region" is easy to read.
    n = label.shape[0]
    if fixed:
        gen = torch.Generator().manual_seed(_FIXED_VECTOR_SEED)
        codes = torch.randn((1, num_classes + 1, VECTOR_CHANNELS), generator=gen).to(label.device)
        codes = codes.expand(n, -1, -1)
    else:
        codes = _randn((n, num_classes + 1, VECTOR_CHANNELS), label, generator)
    idx = label.flatten(1)[..., None].expand(-1, -1, VECTOR_CHANNELS)
    return codes.gather(1, idx).permute(0, 2, 1).reshape(n, VECTOR_CHANNELS, *label.shape[1:])


def label_boundary(label: Tensor, radius: int = 1) -> Tensor:
    """1 where a (2r+1)^2 window around the pixel holds more than one class (ignore counts as one), else 0."""
    x = label[:, None].float()
    k = 2 * radius + 1
    high = F.max_pool2d(x, k, stride=1, padding=radius)
    low = -F.max_pool2d(-x, k, stride=1, padding=radius)
    return (high != low).float()


@encoding("boundary", lambda k: 1, False, "class-agnostic region edges: where regions meet, not which class")
def _boundary(label: Tensor, num_classes: int, fixed: bool, generator: torch.Generator | None) -> Tensor:
    # Class-agnostic region edges (2 px wide): says where regions meet, never which class they are.
    return label_boundary(label)


@encoding("boundary_codes", lambda k: 2, False, "the reference's random codes plus their regions' edges")
def _boundary_codes(
    label: Tensor, num_classes: int, fixed: bool, generator: torch.Generator | None
) -> Tensor:
    # The reference's random codes plus their regions' edges: grouping said twice, identity never.
    return torch.cat([_random_codes(label, num_classes, fixed, generator), label_boundary(label)], 1)


@dataclass
class CorruptionParams:
    """Label corruptions applied before encoding (training encodings only; all off by default).

    flip_prob: per image and class, relabel that whole class region to a random class.
    jitter_prob: per image, grow (dilate) or shrink (erode) one class by ``jitter_radius`` pixels;
        the class is the one under a random pixel, so large regions are picked more often.
    drop_prob: per cell of a ``region_size`` grid, set the cell to ignore.
    """

    flip_prob: float = 0.0
    jitter_prob: float = 0.0
    jitter_radius: int = 3
    drop_prob: float = 0.0
    region_size: int = 32

    @property
    def active(self) -> bool:
        return self.flip_prob > 0 or self.jitter_prob > 0 or self.drop_prob > 0


@dataclass
class EncoderParams:
    """How labels become input channels (``method.encoder`` of a LAD teacher).

    kind: ``random_codes`` (reference), ``onehot`` (gives the class away: an upper bound),
    ``random_vectors`` (8-d random codes per image and class), ``boundary`` (class-agnostic region
    edges) or ``boundary_codes`` (random codes + edges). noise: std of the per-pixel Gaussian noise
    (reference: 0.03 in teacher training, 0.02 in distillation). scale: a number, a normalisation
    name (``imagenet`` -> about 1.74, ``reference_bgr`` -> 100; see ``Normalization.label_scale``),
    or ``auto``: the label scale of the input the network reads (the data's normalisation for a
    teacher in training; what the teacher's checkpoint declares in distillation).
    """

    kind: str = "random_codes"
    noise: float = 0.03
    scale: float | str = 1.0
    corruption: CorruptionParams = field(default_factory=CorruptionParams)

    def check_config(self, key: str) -> None:
        """Values beyond types: a registered kind, noise >= 0 (called by the config validator)."""
        if self.kind not in ENCODINGS:
            raise ConfigError(
                f"config key '{key}.kind': unknown label encoding {self.kind!r}; valid: {ENCODINGS.names()}"
            )
        if self.noise < 0:
            raise ConfigError(f"config key '{key}.noise': must be >= 0, got {self.noise}")

    @classmethod
    def from_dict(cls, raw: dict[str, Any] | EncoderParams | None, where: str = "encoder") -> EncoderParams:
        """Typed params from a config mapping, by the config's validator (errors name ``where.<key>``)."""
        if isinstance(raw, EncoderParams):
            return raw
        return from_mapping(cls, dict(raw or {}), where)


@dataclass
class TeacherLabelParams(EncoderParams):
    """The label channel a label-assisted teacher reads in distillation (``method.teacher_label``).

    Fixed codes with noise 0.02 (the reference's distillation setting); ``scale: auto`` takes the
    teacher checkpoint's own scale. ``kind`` and ``scale`` must match how the teacher was trained.
    """

    noise: float = 0.02
    scale: float | str = "auto"


AUTO = "auto"


def resolve_scale(
    scale: float | str, normalize: str | None = None, label_scales: Mapping[str, float] | None = None
) -> float:
    """A number stays; a normalisation name gives its label scale from ``label_scales`` (the engine's
    table: about 1.74 imagenet, 100 reference_bgr); ``auto`` is the label scale of ``normalize`` (the
    input the network reads; ``imagenet`` when unknown)."""
    if not isinstance(scale, str):
        return float(scale)
    name = (normalize or "imagenet") if scale == AUTO else scale
    if not label_scales:
        raise ConfigError(
            f"label scale {scale!r} names a normalisation, but no label scales were given (build the "
            "method with data_normalization=ladseg.engine.inputs.input_normalization(name), or give a number)"
        )
    if name not in label_scales:
        raise ConfigError(f"label scale {scale!r}: not a normalisation name; valid: {sorted(label_scales)}")
    return float(label_scales[name])


def reconcile_encoding(
    configured: EncoderParams,
    meta: Mapping[str, Any] | None,
    normalize: str | None,
    label_scales: Mapping[str, float] | None,
    key: str,
) -> tuple[EncoderParams, str | None]:
    """What a label-assisted network reads: the one rule for training a student from it and for evaluating it.

    The checkpoint's declared encoding is the truth (the network was trained on it): a configured
    ``kind`` that differs is a ConfigError naming ``key``; the declared scale is always used, and a
    configured explicit scale that differs returns a note saying so (``scale: auto`` never does).
    ``normalize`` is the network's input normalisation, against which a named scale is resolved.
    """
    declared = declared_encoding(meta, label_scales)
    if declared is None:
        return configured, None
    if declared["kind"] != configured.kind:
        raise ConfigError(
            f"{key}.kind={configured.kind!r} but the network was trained with {declared['kind']!r} labels "
            "(its checkpoint)"
        )
    message = None
    if configured.scale != AUTO:
        scale = resolve_scale(configured.scale, normalize, label_scales)
        if not math.isclose(scale, declared["scale"], rel_tol=1e-6):
            message = (
                f"note: {key}.scale={configured.scale!r} ({scale:g}) but the checkpoint was trained with label "
                f"scale {declared['scale']:g}: using {declared['scale']:g}"
            )
    return dataclasses.replace(configured, scale=declared["scale"]), message


def declared_encoding(
    meta: Mapping[str, Any] | None, label_scales: Mapping[str, float] | None = None
) -> dict[str, Any] | None:
    """The label encoding (``kind``, ``scale`` as a number) a label-assisted network was trained with.

    Read from its checkpoint's meta: a ladseg LAD teacher's saved config (``method.encoder``, the
    scale resolved against the checkpoint's normalisation with ``label_scales``); a reference
    (CIRKD/LAD) checkpoint (``normalize: reference_bgr`` and no ladseg config): the reference's
    random codes x 100. None when the meta does not say (a network built in memory, an old checkpoint).
    """
    if not meta:
        return None
    normalize = meta.get("normalize")
    config = meta.get("config")
    if isinstance(config, Mapping):
        method = config.get("method") or {}
        if method.get("name") != "lad_teacher":
            return None
        enc = dict(method.get("encoder") or {})
        kind = enc.get("kind", EncoderParams.kind)
        scale = resolve_scale(enc.get("scale", EncoderParams.scale), normalize, label_scales)
        return {"kind": kind, "scale": scale}
    if normalize == "reference_bgr":
        return {"kind": "random_codes", "scale": resolve_scale("reference_bgr", None, label_scales)}
    return None


class LabelEncoder:
    """Turns an N x H x W label (``ignore_index`` = ignore) into N x C x H x W label channels.

    ``scale`` is the resolved multiplier (:func:`resolve_scale`); None takes ``params.scale`` when it
    is a number, and leaves a named scale unresolved until the method learns the normalisation.
    """

    def __init__(
        self,
        params: EncoderParams,
        num_classes: int,
        ignore_index: int = IGNORE_INDEX,
        scale: float | None = None,
    ) -> None:
        if num_classes < 1:
            raise ValueError(f"num_classes must be >= 1, got {num_classes}")
        self.params = params
        self.num_classes = num_classes
        self.ignore_index = ignore_index
        if scale is None and not isinstance(params.scale, str):
            scale = float(params.scale)
        self.scale = scale
        self._encode = ENCODINGS.get(params.kind)

    @property
    def channels(self) -> int:
        return channels(self.params.kind, self.num_classes)

    @torch.no_grad()
    def __call__(
        self,
        mask: Tensor,
        fixed: bool = False,
        generator: torch.Generator | None = None,
        noise: float | None = None,
        corrupt: bool | None = None,
    ) -> Tensor:
        """Encode ``mask``: random codes (``fixed=False``, teacher training) or the fixed codes.

        ``noise`` overrides the configured std; corruptions apply to random encodings unless
        ``corrupt`` says otherwise. Returns float32 on the mask's device.
        """
        label = self.to_class_index(mask)
        if corrupt if corrupt is not None else (not fixed and self.params.corruption.active):
            label = corrupt_labels(label, self.num_classes, self.params.corruption, generator)
        codes = self._encode(label, self.num_classes, fixed, generator)
        std = self.params.noise if noise is None else noise
        if std > 0:
            codes = codes + std * _randn(tuple(codes.shape), codes, generator)
        if self.scale is None:
            resolve_scale(self.params.scale)  # raises: a named scale needs the normalisation's table
        return codes * self.scale

    def to_class_index(self, mask: Tensor) -> Tensor:
        """Labels in [0, K]: ignore -> K. Any other value outside [0, K) is an error."""
        if mask.dim() != 3:
            raise ValueError(f"expected a label of shape N x H x W, got {tuple(mask.shape)}")
        label = mask.long()
        ignore = label == self.ignore_index
        bad = ((label < 0) | (label >= self.num_classes)) & ~ignore
        if bool(bad.any()):
            values = torch.unique(label[bad])[:5].tolist()
            raise ValueError(
                f"label values {values} are outside [0, {self.num_classes}) and not the ignore index {self.ignore_index}"
            )
        return torch.where(ignore, torch.full_like(label, self.num_classes), label)


def corrupt_labels(
    label: Tensor, num_classes: int, params: CorruptionParams, generator: torch.Generator | None = None
) -> Tensor:
    """Vectorised label corruptions on class indices in [0, K] (K = ignore); see :class:`CorruptionParams`."""
    n, h, w = label.shape
    k = num_classes
    if params.flip_prob > 0:
        # One remapping table per image: class j keeps j, or with flip_prob becomes a random class.
        keep = torch.arange(k + 1, device=label.device).expand(n, -1)
        new = (_rand((n, k + 1), label, generator) * k).long().clamp_max(k - 1)
        flip = _rand((n, k + 1), label, generator) < params.flip_prob
        flip[:, k] = False  # ignore stays ignore
        table = torch.where(flip, new, keep)
        label = table.gather(1, label.flatten(1)).view(n, h, w)
    if params.jitter_prob > 0 and params.jitter_radius > 0:
        label = _jitter(label, k, params, generator)
    if params.drop_prob > 0:
        cells = (-(-h // params.region_size), -(-w // params.region_size))
        drop = (_rand((n, 1, *cells), label, generator) < params.drop_prob).float()
        drop = F.interpolate(drop, size=(h, w), mode="nearest")[:, 0].bool()
        label = torch.where(drop, torch.full_like(label, k), label)
    return label


def _jitter(label: Tensor, k: int, params: CorruptionParams, generator: torch.Generator | None) -> Tensor:
    """Dilate or erode one class per image (chosen image-wise with ``jitter_prob``) by max-pooling."""
    n, h, w = label.shape
    r = params.jitter_radius
    pixel = (_rand((n, 1), label, generator) * (h * w)).long().clamp_max(h * w - 1)
    cls = label.flatten(1).gather(1, pixel).view(n, 1, 1)  # class under a random pixel
    active = (_rand((n, 1, 1), label, generator) < params.jitter_prob) & (cls < k)
    grow = _rand((n, 1, 1), label, generator) < 0.5
    inside = label == cls

    def pool(x: Tensor) -> Tensor:
        return F.max_pool2d(x[:, None].float(), 2 * r + 1, stride=1, padding=r)[:, 0]

    near_cls = pool(inside) > 0  # dilation of the chosen class
    dilated = torch.where(near_cls & (label < k), cls.expand_as(label), label)
    # Erosion: class pixels near another (non-ignore) class take that neighbour's label.
    others = torch.where(inside | (label == k), torch.full_like(label, -1), label)
    neighbour = pool(others).long()
    eroded = torch.where(inside & (neighbour >= 0), neighbour, label)
    jittered = torch.where(grow, dilated, eroded)
    return torch.where(active, jittered, label)


__all__ = [
    "ENCODINGS",
    "CorruptionParams",
    "EncoderParams",
    "LabelEncoder",
    "REFERENCE_CODES_MAX_CLASSES",
    "ENCODING_INFO",
    "EncodingInfo",
    "TeacherLabelParams",
    "VECTOR_CHANNELS",
    "channels",
    "label_boundary",
    "corrupt_labels",
    "declared_encoding",
    "encoding",
    "fixed_codes",
    "resolve_scale",
]

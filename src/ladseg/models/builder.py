"""``build_model``: a model name picks a decode head; any registered backbone feeds it.

``MODELS`` maps a model name (``fcn, pspnet, deeplabv3, ocrnet, stdc``) to a :class:`ModelDef`
(which head, whether an FCN auxiliary head on ``feats[-2]`` is added, which backbones fit).
The built ``Segmentor`` carries ``spec``, the plain-data arguments that rebuild it.
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass
from typing import Any

from ladseg.errors import ConfigError
from ladseg.models.backbones import BACKBONES
from ladseg.models.heads import HEADS
from ladseg.models.heads.fcn import AuxFCNHead
from ladseg.models.label_branch import LabelBranch
from ladseg.models.segmentor import Segmentor
from ladseg.registry import Registry

MODELS: Registry = Registry("model")
IMAGE_CHANNELS = 3


@dataclass(frozen=True)
class ModelDef:
    """How a model name is assembled.

    head: name in ``HEADS``. fcn_aux: add an FCN auxiliary head on ``feats[-2]`` (the head
    does its own deep supervision otherwise). backbone_prefix: only backbones whose name starts
    with it fit (STDC's head needs STDC's stages); None = every backbone.
    """

    name: str
    head: str
    fcn_aux: bool = True
    backbone_prefix: str | None = None

    def fits(self, backbone: str) -> bool:
        return self.backbone_prefix is None or backbone.startswith(self.backbone_prefix)

    def __call__(self, **kwargs: Any) -> Segmentor:
        """``MODELS.build("pspnet", backbone="resnet18", num_classes=21)`` = ``build_model("pspnet", ...)``."""
        return build_model(self.name, **kwargs)


for _def in (
    ModelDef("fcn", "fcn"),
    ModelDef("pspnet", "psp"),
    ModelDef("deeplabv3", "aspp"),
    ModelDef("ocrnet", "ocr", fcn_aux=False),  # OCR's soft-region branch is its auxiliary output
    ModelDef("stdc", "stdc_head", fcn_aux=False, backbone_prefix="stdc"),
):
    MODELS.register(_def.name)(_def)


def _accepts(factory: Any, arg: str) -> bool:
    try:
        return arg in inspect.signature(factory).parameters
    except (TypeError, ValueError):
        return False


def check_model_names(name: str, backbone: str) -> ModelDef:
    """The model's definition, if ``name`` and ``backbone`` are registered and fit together (no building)."""
    try:
        mdef: ModelDef = MODELS.get(name)  # type: ignore[assignment]
        BACKBONES.get(backbone)
    except KeyError as exc:
        raise ConfigError(str(exc.args[0])) from None
    if not mdef.fits(backbone):
        fitting = [b for b in BACKBONES.names() if mdef.fits(b)]
        raise ConfigError(f"model {name!r} does not fit backbone {backbone!r}; it needs one of {fitting}")
    return mdef


def build_model(
    name: str,
    backbone: str,
    num_classes: int,
    in_channels: int = 3,
    aux: bool = True,
    output_stride: int = 8,
    pretrained: str | None = None,
    head: dict | None = None,
    label_branch: bool = False,
) -> Segmentor:
    """Build a segmentor, e.g. ``build_model("deeplabv3", "resnet18", 21, in_channels=4)``.

    ``in_channels`` > 3 makes a LAD teacher (image + label channels). ``pretrained`` is a local
    ImageNet weights file for the backbone. ``head`` holds extra decode-head arguments
    (``channels``, ``dropout``, ...) and ``aux_dropout``, the FCN auxiliary head's dropout (0.1 by
    default; LAD's DeepLabV3 uses 0.01 in the ASPP projection, the head and the aux head).
    ``label_branch``: the ``in_channels - 3`` label channels go through their own branch added to the
    backbone's stem output (:mod:`ladseg.models.label_branch`, RITM's Conv1S) instead of a widened
    first conv; the backbone then reads the 3 image channels alone.
    Unknown names raise ``ConfigError`` listing valid ones.
    """
    mdef = check_model_names(name, backbone)
    backbone_factory = BACKBONES.get(backbone)
    head_factory = HEADS.get(mdef.head)
    if num_classes < 1:
        raise ConfigError(f"num_classes must be >= 1, got {num_classes}")
    if in_channels < 3:
        raise ConfigError(
            f"in_channels must be >= 3 (image channels, + label channels for LAD), got {in_channels}"
        )

    if label_branch and in_channels <= IMAGE_CHANNELS:
        raise ConfigError(
            f"model.label_branch reads the label channels after the {IMAGE_CHANNELS} image channels, but "
            f"in_channels is {in_channels}: a label branch is for a LAD teacher (in_channels = 3 + label channels)"
        )
    bb_channels = IMAGE_CHANNELS if label_branch else in_channels
    bb = backbone_factory(in_channels=bb_channels, output_stride=output_stride, pretrained=pretrained)
    branch = None
    if label_branch:
        stem = (getattr(bb, "stem_channels", None), getattr(bb, "stem_stride", None))
        if None in stem:
            raise ConfigError(
                f"backbone {backbone!r} declares no stem (stem_channels, stem_stride, forward_stem): "
                "it cannot take model.label_branch"
            )
        branch = LabelBranch(in_channels - IMAGE_CHANNELS, int(stem[0]), stride=int(stem[1]))
    head_kwargs = dict(head or {})
    aux_kwargs = {"dropout": float(head_kwargs.pop("aux_dropout"))} if "aux_dropout" in head_kwargs else {}
    if _accepts(head_factory, "output_stride"):
        head_kwargs.setdefault("output_stride", output_stride)
    try:
        decode_head = head_factory(list(bb.out_channels), num_classes, **head_kwargs)
    except TypeError as exc:  # an unknown head argument in a config
        raise ConfigError(f"bad arguments for head {mdef.head!r} of model {name!r}: {exc}") from None
    aux_head = AuxFCNHead(bb.out_channels[-2], num_classes, **aux_kwargs) if aux and mdef.fcn_aux else None
    model = Segmentor(bb, decode_head, aux_head, aux_index=-2, name=f"{name}_{backbone}", label_branch=branch)
    # Plain data that rebuilds the architecture. The pretrained path is dropped: a checkpoint's
    # own weights replace it, and the file need not exist where the checkpoint is loaded.
    model.spec = {
        "name": name,
        "backbone": backbone,
        "num_classes": int(num_classes),
        "in_channels": int(in_channels),
        "aux": bool(aux),
        "output_stride": int(output_stride),
        "pretrained": None,
        "head": dict(head or {}),
    }
    if label_branch:  # recorded only when set: the specs of every other model stay as they were
        model.spec["label_branch"] = True
    return model


def list_models() -> list[tuple[str, str]]:
    """Every sensible (model, backbone) pair among the registered models, heads and backbones."""
    pairs = []
    for name in MODELS.names():
        mdef: ModelDef = MODELS.get(name)  # type: ignore[assignment]
        if mdef.head not in HEADS:
            continue
        pairs += [(name, b) for b in BACKBONES.names() if mdef.fits(b)]
    return pairs

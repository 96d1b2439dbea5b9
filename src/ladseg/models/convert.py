"""Import checkpoints of the reference code (CIRKD / LAD) into ladseg models.

The reference saves ``pretrained.*`` (backbone), ``head.*`` (decode head) and ``auxlayer.*``
(auxiliary FCN head); ladseg's modules have the same layer order, so import is a key rename.
Everything else (model, depth, input and class counts, head width) is read from the names and
shapes. The reference's input is BGR 0-255 minus the mean (``reference_bgr``): a data-side
normalisation that the returned meta records, not something the model does.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from torch import Tensor

from ladseg.errors import CheckpointError
from ladseg.models.builder import build_model
from ladseg.models.heads.aspp import default_channels
from ladseg.models.segmentor import Segmentor
from ladseg.models.weights import (
    check_state_dict,
    dead_input_channels,
    drop_dead_input_channels,
    first_conv_key,
    read_weights_file,
    unwrap_state_dict,
)

REFERENCE_NORMALIZE = "reference_bgr"
_FIRST_CONV = "pretrained.conv1.weight"

#: the way out named by every refusal of a network with more than 3 input channels
IMAGE_ONLY_HINT = (
    "a reference (CIRKD/LAD) student, which the reference code runs with a zero 4th channel, imports as "
    "an image-only model with `ladseg convert --image-only {source} OUTPUT.pth` (exact: a zero channel "
    "contributes nothing)"
)


def image_only_hint(source: object = "SOURCE.pth") -> str:
    """:data:`IMAGE_ONLY_HINT` naming ``source``: refusals of a 4-channel network end with it."""
    return IMAGE_ONLY_HINT.format(source=source)


def to_image_only(model: Segmentor) -> tuple[Segmentor, int]:
    """``model`` as the 3-channel network it is when its extra input channels are fed zeros.

    The reference code saves its LAD students with a 4-channel first conv and runs them with a zero
    4th channel (its ``eval.py``); a channel that is always zero adds nothing to the convolution, so
    keeping the first conv's weights of the 3 image channels gives exactly the same logits. A label
    branch (``model.label_branch``, bias-free) is dropped: with a zero label it adds nothing either.
    Returns ``(model, channels dropped)``; a 3-channel ``model`` comes back unchanged with 0.
    """
    extra = int(model.in_channels) - 3
    if extra <= 0:
        return model, 0
    key = first_conv_key(model)
    if key is None:
        raise CheckpointError(
            f"cannot find the first convolution of {model.spec['name']} to drop its extra channels"
        )
    state = model.state_dict()
    # a label branch (bias-free, so a zero label adds exactly nothing) goes; a widened conv is cut to 3
    state = {k: v for k, v in state.items() if not k.startswith("label_branch.")}
    state[key] = state[key][:, :3].clone()
    spec = {k: v for k, v in model.spec.items() if k != "label_branch"}
    image_only = build_model(**{**spec, "in_channels": 3})
    image_only.load_state_dict(state, strict=True)
    return image_only.train(model.training), extra


def _sub(template: str, shift: int = 0) -> Callable[[re.Match[str]], str]:
    """Replacement that formats the match groups into ``template`` (group 1 shifted by ``shift``)."""

    def repl(m: re.Match[str]) -> str:
        groups = list(m.groups())
        if groups and shift:
            groups[0] = str(int(groups[0]) + shift)
        return template.format(*groups)

    return repl


# reference name -> ladseg name; the first pattern that matches wins.
_RULES: list[tuple[re.Pattern[str], Callable[[re.Match[str]], str]]] = [
    (re.compile(p), r)
    for p, r in [
        (r"^pretrained\.", _sub("backbone.")),
        (r"^head\.aspp\.b0\.([01])\.", _sub("decode_head.aspp.branches.0.{0}.")),
        (r"^head\.aspp\.b([123])\.block\.([01])\.", _sub("decode_head.aspp.branches.{0}.{1}.")),
        (r"^head\.aspp\.b4\.gap\.([12])\.", _sub("decode_head.aspp.image_pool.{0}.", shift=-1)),
        (r"^head\.aspp\.project\.([01])\.", _sub("decode_head.aspp.project.{0}.")),
        (r"^head\.psp\.conv([1-4])\.([01])\.", _sub("decode_head.psp.stages.{0}.{1}.", shift=-1)),
        (r"^head\.block\.([01])\.", _sub("decode_head.bottleneck.{0}.")),
        (r"^head\.block\.4\.", _sub("decode_head.classifier.")),  # DeepLabV3: classifier inside block
        (r"^head\.classifier\.", _sub("decode_head.classifier.")),  # PSPNet
        (r"^auxlayer\.block\.([01])\.", _sub("aux_head.bottleneck.{0}.")),
        (r"^auxlayer\.block\.4\.", _sub("aux_head.classifier.")),
    ]
]

# a head key prefix in the reference -> ladseg model name
_HEAD_KINDS = {"head.aspp.": "deeplabv3", "head.psp.": "pspnet"}
# (bottleneck?, blocks in layer3) -> ResNet depth
_DEPTHS = {(False, 2): 18, (True, 6): 50, (True, 23): 101}


def rename_reference_key(key: str) -> str:
    """Map one reference key to its ladseg name (unchanged when no rule applies)."""
    for pattern, repl in _RULES:
        if pattern.match(key):
            return pattern.sub(repl, key, count=1)
    return key


def is_reference_state_dict(state_dict: Mapping[str, Any]) -> bool:
    """True for a CIRKD/LAD segmentation state dict (``pretrained.*`` + ``head.*`` keys)."""
    keys = list(state_dict)
    return any(k.startswith("pretrained.") for k in keys) and any(k.startswith("head.") for k in keys)


def _first(keys: list[str], n: int = 5) -> str:
    return ", ".join(keys[:n]) + (f" (+{len(keys) - n} more)" if len(keys) > n else "")


def detect_reference_spec(state_dict: Mapping[str, Tensor]) -> dict[str, Any]:
    """Read ``build_model`` arguments from a reference state dict's names and shapes."""
    keys = list(state_dict)
    if not is_reference_state_dict(state_dict):
        raise CheckpointError(
            "not a reference (CIRKD/LAD) checkpoint: expected keys starting with 'pretrained.' and "
            f"'head.', found {_first(keys)}"
        )
    kinds = {name for prefix, name in _HEAD_KINDS.items() if any(k.startswith(prefix) for k in keys)}
    if len(kinds) != 1:
        heads = sorted({".".join(k.split(".")[:2]) for k in keys if k.startswith("head.")})
        raise CheckpointError(
            f"cannot tell the reference model: expected head.aspp.* (DeepLabV3) or head.psp.* (PSPNet), "
            f"found head modules {heads}"
        )
    name = kinds.pop()

    bottleneck = "pretrained.layer1.0.conv3.weight" in state_dict
    blocks = {int(k.split(".")[2]) for k in keys if k.startswith("pretrained.layer3.")}
    depth = _DEPTHS.get((bottleneck, len(blocks)))
    if depth is None:
        raise CheckpointError(
            f"unsupported reference backbone: {'bottleneck' if bottleneck else 'basic'} blocks with "
            f"{len(blocks)} blocks in layer3; expected ResNet-18 (basic, 2), -50 (bottleneck, 6) or -101 (23)"
        )
    deep_stem = "pretrained.conv3.weight" in state_dict
    backbone = f"resnet{depth}" + ("" if deep_stem else "_tv")

    conv1 = state_dict.get("pretrained.conv1.weight")
    cls_key = "head.block.4.weight" if name == "deeplabv3" else "head.classifier.weight"
    if conv1 is None or cls_key not in state_dict or "head.block.0.weight" not in state_dict:
        missing = [
            k for k in ("pretrained.conv1.weight", cls_key, "head.block.0.weight") if k not in state_dict
        ]
        raise CheckpointError(f"reference {name} checkpoint lacks {', '.join(missing)}")
    c4 = 512 * (4 if bottleneck else 1)
    width = int(state_dict["head.block.0.weight"].shape[0])
    default_width = default_channels(c4) if name == "deeplabv3" else c4 // 4
    return {
        "name": name,
        "backbone": backbone,
        "num_classes": int(state_dict[cls_key].shape[0]),
        "in_channels": int(conv1.shape[1]),
        "aux": any(k.startswith("auxlayer.") for k in keys),
        "output_stride": 8,  # the reference always runs its dilated ResNets at 1/8
        "pretrained": None,
        "head": {} if width == default_width else {"channels": width},
    }


def convert_reference_checkpoint(
    state_dict: Mapping[str, Tensor], image_only: bool = False
) -> tuple[Segmentor, dict[str, Any]]:
    """Build the matching ladseg model and load the reference weights into it (strictly).

    Returns ``(model, meta)`` with ``meta = {"spec", "normalize": "reference_bgr", "source_format"}``.
    The reference saves students with a 4-channel first conv too: a dead (all-zero) 4th channel is
    always dropped (exact, it only ever saw zeros). A student whose 4th-channel weights are not zero
    (it is still run with a zero channel) is imported as image-only with ``image_only=True`` (see
    :func:`to_image_only`); a LAD teacher, which reads its label there, must not be.
    ``meta["dropped_input_channels"]`` says how many channels were dropped.
    """
    state_dict = unwrap_state_dict(dict(state_dict), source="reference checkpoint")
    conv1 = state_dict.get(_FIRST_CONV)
    dropped = 0
    if conv1 is not None and dead_input_channels(conv1):  # a student: its label channel only saw zeros
        dropped = int(conv1.shape[1]) - 3
        state_dict[_FIRST_CONV] = drop_dead_input_channels(conv1)
    spec = detect_reference_spec(state_dict)
    model = build_model(**spec)
    renamed = {rename_reference_key(k): v for k, v in state_dict.items()}
    check_state_dict(model, renamed, what=f"reference {spec['name']}-{spec['backbone']} weights")
    model.load_state_dict(renamed, strict=True)
    if image_only:
        model, extra = to_image_only(model)
        dropped += extra
    meta = {"spec": model.spec, "normalize": REFERENCE_NORMALIZE, "source_format": "cirkd"}
    if dropped:
        meta["dropped_input_channels"] = dropped
    return model, meta


def load_reference_checkpoint(path: str | Path, image_only: bool = False) -> Segmentor:
    """Read a reference ``.pth`` safely and return the converted model (``model.meta`` holds the meta);
    ``image_only``: see :func:`convert_reference_checkpoint`."""
    model, meta = convert_reference_checkpoint(read_weights_file(path), image_only=image_only)
    model.meta = {**meta, "source": str(path)}
    return model

"""Decode heads: ``head(feats: list[Tensor]) -> SegOutput`` (logits + features).

Contract of a decode head module:
    __init__(in_channels: Sequence[int], num_classes: int, channels: int | None = None, ...)
    num_classes: int
    forward(feats) -> SegOutput      # reads the stage(s) it needs, e.g. feats[-1]
"""

from ladseg.registry import Registry

HEADS: Registry = Registry("head")

from ladseg.models.heads import fcn  # noqa: E402,F401
from ladseg.models.heads import psp  # noqa: E402,F401
from ladseg.models.heads import aspp  # noqa: E402,F401
from ladseg.models.heads import ocr  # noqa: E402,F401
from ladseg.models.heads import stdc_head  # noqa: E402,F401

__all__ = ["HEADS"]

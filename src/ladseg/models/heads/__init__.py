"""Decode heads: ``head(feats: list[Tensor]) -> SegOutput`` (logits + features).

Contract of a decode head module:
    __init__(in_channels: Sequence[int], num_classes: int, channels: int | None = None, ...)
    num_classes: int
    forward(feats) -> SegOutput      # reads the stage(s) it needs, e.g. feats[-1]
"""

from ladseg.registry import Registry

HEADS: Registry = Registry("head")

from ladseg.models.heads import aspp, fcn, ocr, psp, stdc_head  # noqa: E402,F401

__all__ = ["HEADS"]

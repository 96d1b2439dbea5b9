"""Decode heads: ``head(feats: list[Tensor]) -> SegOutput`` (logits + features).

The registry and the base class live in :mod:`ladseg.models.heads.base`; importing this package
imports every head module below, which registers its head.
"""

from ladseg.models.heads import aspp, fcn, ocr, psp, stdc_head  # noqa: F401  (register the heads)
from ladseg.models.heads.base import HEADS, DecodeHead

__all__ = ["HEADS", "DecodeHead"]

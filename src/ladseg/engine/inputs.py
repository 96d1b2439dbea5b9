"""What the engine tells a method about its input: the data's normalisation and the label scales.

The methods never import the data package; the engine resolves the normalisation names here
(``data.normalize``, a checkpoint's ``normalize``) and passes the result in.
"""

from __future__ import annotations

from ladseg.data.transforms import NORMALIZATIONS, get_normalization, renormalize
from ladseg.methods.base import InputNormalization


def label_scales() -> dict[str, float]:
    """The LAD label scale of every normalisation name (about 1.74 imagenet, 100 reference_bgr)."""
    return {name: float(norm.label_scale) for name, norm in NORMALIZATIONS.items()}


def input_normalization(name: str) -> InputNormalization:
    """The batches' normalisation ``name`` as a method reads it (an unknown name is a ConfigError)."""
    get_normalization(name)
    return InputNormalization(name=name, label_scales=label_scales(), convert=renormalize)


__all__ = ["input_normalization", "label_scales"]

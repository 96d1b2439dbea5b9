"""Backbones: each returns a list of stage outputs and declares their channels and strides.

The registry and the base class live in :mod:`ladseg.models.backbones.base`; importing this
package imports every backbone module below, which registers its backbones.
"""

from ladseg.models.backbones import efficientnet_lite, mobilenetv2, resnet, stdc  # noqa: F401  (register)
from ladseg.models.backbones.base import BACKBONES, Backbone

__all__ = ["BACKBONES", "Backbone"]

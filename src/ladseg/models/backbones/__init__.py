"""Backbones: each returns a list of stage outputs and declares their channels and strides.

Contract of a backbone module:
    in_channels: int                 # 3 + number of label channels
    out_channels: tuple[int, ...]    # channels of each returned feature map
    strides: tuple[int, ...]         # output stride of each returned feature map
    forward(x) -> list[Tensor]       # e.g. [c1, c2, c3, c4]
    first_conv: nn.Conv2d            # the conv that reads the input (widened for LAD)
"""

from ladseg.registry import Registry

BACKBONES: Registry = Registry("backbone")

# Importing the modules fills the registry.
from ladseg.models.backbones import efficientnet_lite, mobilenetv2, resnet, stdc  # noqa: E402,F401

__all__ = ["BACKBONES"]

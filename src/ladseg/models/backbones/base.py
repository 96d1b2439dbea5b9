"""The backbone base class and the ``BACKBONES`` registry.

Contract of a backbone (registered with ``@BACKBONES.register(name)``, a class or a factory taking
``in_channels``, ``output_stride`` and ``pretrained``):
    in_channels: int                 # 3 + number of label channels
    out_channels: tuple[int, ...]    # channels of each returned feature map
    strides: tuple[int, ...]         # output stride of each returned feature map
    forward(x) -> list[Tensor]       # e.g. [c1, c2, c3, c4]
    first_conv: nn.Conv2d            # the conv that reads the input (widened for LAD)
"""

from __future__ import annotations

from torch import Tensor, nn

from ladseg.registry import Registry


class Backbone(nn.Module):
    """Base of the backbones: declares the attributes the segmentor and the weight loaders read."""

    in_channels: int
    out_channels: tuple[int, ...]
    strides: tuple[int, ...]

    @property
    def first_conv(self) -> nn.Conv2d:
        """The convolution that reads the input image (and the label channels of a LAD teacher)."""
        raise NotImplementedError

    def forward(self, x: Tensor) -> list[Tensor]:
        """The stage outputs, shallow to deep, with ``out_channels`` and ``strides``."""
        raise NotImplementedError


BACKBONES: Registry[Backbone] = Registry("backbone")

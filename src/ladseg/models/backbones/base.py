"""The backbone base class and the ``BACKBONES`` registry.

Contract of a backbone (registered with ``@BACKBONES.register(name)``, a class or a factory taking
``in_channels``, ``output_stride`` and ``pretrained``):
    in_channels: int                 # 3 + number of label channels
    out_channels: tuple[int, ...]    # channels of each returned feature map
    strides: tuple[int, ...]         # output stride of each returned feature map
    forward(x) -> list[Tensor]       # e.g. [c1, c2, c3, c4]
    first_conv: nn.Conv2d            # the conv that reads the input (widened for LAD)

and the split of ``forward`` at its stem, where a LAD teacher's label branch adds its features
(``model.label_branch``, RITM's "Conv1S"; see :mod:`ladseg.models.label_branch`):
    stem_channels: int               # channels of the stem's output
    stem_stride: int                 # its stride (2 for every backbone here)
    forward_stem(x) -> Tensor        # the input's first stride-2 conv block (before any pooling)
    forward_stages(s) -> list[Tensor]  # the rest: forward(x) == forward_stages(forward_stem(x))
"""

from __future__ import annotations

from torch import Tensor, nn

from ladseg.registry import Registry


class Backbone(nn.Module):
    """Base of the backbones: declares the attributes the segmentor and the weight loaders read."""

    in_channels: int
    out_channels: tuple[int, ...]
    strides: tuple[int, ...]
    #: width and stride of ``forward_stem``'s output (where a label branch adds in)
    stem_channels: int
    stem_stride: int

    @property
    def first_conv(self) -> nn.Conv2d:
        """The convolution that reads the input image (and the label channels of a LAD teacher)."""
        raise NotImplementedError

    def forward_stem(self, x: Tensor) -> Tensor:
        """The stem: the first stride-2 conv block (conv, BN, activation), ``stem_channels`` wide."""
        raise NotImplementedError

    def forward_stages(self, x: Tensor) -> list[Tensor]:
        """Everything after the stem: the stage outputs from the stem's output."""
        raise NotImplementedError

    def forward(self, x: Tensor) -> list[Tensor]:
        """The stage outputs, shallow to deep, with ``out_channels`` and ``strides``."""
        return self.forward_stages(self.forward_stem(x))


BACKBONES: Registry[Backbone] = Registry("backbone")

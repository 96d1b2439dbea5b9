"""FCN head (Long et al. 2015 style): 3x3 conv to in/4 -> BN -> ReLU -> Dropout(0.1) -> 1x1.

Also the auxiliary head of every ResNet model (on c3, as PSPNet's deep supervision);
:class:`AuxFCNHead` takes one tensor and returns logits, which is what ``Segmentor`` calls.
"""

from __future__ import annotations

from collections.abc import Sequence

from torch import Tensor

from ladseg.models.heads.base import HEADS, DecodeHead
from ladseg.models.layers import ConvBNReLU
from ladseg.models.segmentor import SegOutput


class _FCNBlock(DecodeHead):
    """3x3 ConvBNReLU bottleneck (to ``in_channels / 4`` by default), then the shared classifier."""

    def __init__(self, in_channels: int, num_classes: int, channels: int | None, dropout: float) -> None:
        super().__init__(num_classes, channels or max(1, in_channels // 4))
        self.bottleneck = ConvBNReLU(in_channels, self.channels, 3)
        self.add_classifier(dropout)
        self.init_weights()

    def _run(self, x: Tensor) -> tuple[Tensor, Tensor]:
        feat = self.bottleneck(x)
        return self.classify(feat), feat


@HEADS.register("fcn")
class FCNHead(_FCNBlock):
    """Decode head on ``feats[in_index]`` (default the last stage)."""

    def __init__(
        self,
        in_channels: Sequence[int],
        num_classes: int,
        channels: int | None = None,
        dropout: float = 0.1,
        in_index: int = -1,
    ) -> None:
        super().__init__(int(in_channels[in_index]), num_classes, channels, dropout)
        self.in_index = in_index

    def forward(self, feats: Sequence[Tensor]) -> SegOutput:
        logits, feat = self._run(feats[self.in_index])
        return SegOutput(logits=logits, features=feat)


class AuxFCNHead(_FCNBlock):
    """Auxiliary head: one feature map in (``feats[aux_index]``), logits out."""

    def __init__(
        self, in_channels: int, num_classes: int, channels: int | None = None, dropout: float = 0.1
    ) -> None:
        super().__init__(int(in_channels), num_classes, channels, dropout)

    def forward(self, x: Tensor) -> Tensor:
        return self._run(x)[0]

"""FCN head (Long et al. 2015 style): 3x3 conv to in/4 -> BN -> ReLU -> Dropout(0.1) -> 1x1.

Also the auxiliary head of every ResNet model (on c3, as PSPNet's deep supervision);
:class:`AuxFCNHead` takes one tensor and returns logits, which is what ``Segmentor`` calls.
"""

from __future__ import annotations

from collections.abc import Sequence

from torch import Tensor, nn

from ladseg.models.heads import HEADS
from ladseg.models.layers import ConvBNReLU, init_weights
from ladseg.models.segmentor import SegOutput


class _FCNBlock(nn.Module):
    def __init__(self, in_channels: int, num_classes: int, channels: int | None, dropout: float) -> None:
        super().__init__()
        channels = channels or max(1, in_channels // 4)
        self.num_classes = num_classes
        self.channels = channels
        self.bottleneck = ConvBNReLU(in_channels, channels, 3)
        self.dropout = nn.Dropout(dropout)
        self.classifier = nn.Conv2d(channels, num_classes, 1)
        init_weights(self)

    def _run(self, x: Tensor) -> tuple[Tensor, Tensor]:
        feat = self.bottleneck(x)
        return self.classifier(self.dropout(feat)), feat


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

"""DeepLabV3 head (Chen et al. 2017, "Rethinking Atrous Convolution"), reference layout.

ASPP branches b0 1x1, b1-b3 3x3 with rates 12/24/36 at output stride 8 (6/12/18 at 16),
b4 image pooling; concat -> 1x1 project -> BN -> ReLU -> Dropout (``aspp_dropout``);
then 3x3 conv -> BN -> ReLU -> Dropout (``dropout``) -> 1x1 classifier. ``features`` is the tensor
before that last dropout and classifier.

Dropout rates (projection / head / FCN aux head): LAD's code 0.01 / 0.01 / 0.01 (the LAD configs set
``head: {aspp_dropout: 0.01, dropout: 0.01, aux_dropout: 0.01}``), CIRKD's 0.5 / 0.1 / 0.1; the
defaults here, 0.01 / 0.1 / 0.1, are kept for the checkpoints trained with them.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ladseg.models.heads.base import HEADS, DecodeHead
from ladseg.models.layers import ConvBNReLU
from ladseg.models.segmentor import ALIGN_CORNERS, SegOutput

_RATES_OS8 = (12, 24, 36)


class ASPP(nn.Module):
    """Atrous spatial pyramid pooling: ``branches`` (b0..b3), ``image_pool`` (b4), ``project``."""

    def __init__(self, in_channels: int, channels: int, rates: Sequence[int], dropout: float) -> None:
        super().__init__()
        self.branches = nn.ModuleList(
            [ConvBNReLU(in_channels, channels, 1)] + [ConvBNReLU(in_channels, channels, 3, r) for r in rates]
        )
        self.image_pool = ConvBNReLU(in_channels, channels, 1)
        self.project = ConvBNReLU(channels * (len(rates) + 2), channels, 1)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: Tensor) -> Tensor:
        outs = [branch(x) for branch in self.branches]
        pooled = self.image_pool(F.adaptive_avg_pool2d(x, 1))
        outs.append(F.interpolate(pooled, size=x.shape[-2:], mode="bilinear", align_corners=ALIGN_CORNERS))
        return self.dropout(self.project(torch.cat(outs, dim=1)))


def default_channels(c4: int) -> int:
    """The reference's widths: 128 for ResNet-18's 512-channel c4, 256 for 2048 (and any wide c4)."""
    return 128 if c4 < 1024 else 256


@HEADS.register("aspp")
class ASPPHead(DecodeHead):
    """DeepLabV3 decode head on ``feats[-1]``."""

    def __init__(
        self,
        in_channels: Sequence[int],
        num_classes: int,
        channels: int | None = None,
        dropout: float = 0.1,
        aspp_dropout: float = 0.01,
        rates: Sequence[int] | None = None,
        output_stride: int = 8,
    ) -> None:
        c4 = int(in_channels[-1])
        channels = channels or default_channels(c4)
        if rates is None:  # the rates are set for OS8; a coarser map gets proportionally smaller ones
            rates = tuple(max(1, r * 8 // output_stride) for r in _RATES_OS8)
        super().__init__(num_classes, channels)
        self.rates = tuple(rates)
        self.aspp = ASPP(c4, channels, self.rates, aspp_dropout)
        self.bottleneck = ConvBNReLU(channels, channels, 3)
        self.add_classifier(dropout)
        self.init_weights()

    def forward(self, feats: Sequence[Tensor]) -> SegOutput:
        feat = self.bottleneck(self.aspp(feats[-1]))
        return SegOutput(logits=self.classify(feat), features=feat)

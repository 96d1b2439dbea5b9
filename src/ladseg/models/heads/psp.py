"""PSPNet head (Zhao et al. 2017, "Pyramid Scene Parsing Network"), reference layout.

c4 (C channels) -> average pools of 1, 2, 3, 6 bins, each 1x1 conv to C/4 -> BN -> ReLU ->
bilinear up-sampling (align_corners=True); concat [c4, p1, p2, p3, p6] (2C) -> 3x3 conv ->
BN -> ReLU -> Dropout(0.1) -> 1x1 classifier. ``features`` is the tensor before the dropout.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ladseg.models.heads.base import HEADS, DecodeHead
from ladseg.models.layers import ConvBNReLU
from ladseg.models.segmentor import ALIGN_CORNERS, SegOutput


class PyramidPooling(nn.Module):
    """Pool to each bin size, reduce to C/4, up-sample, concat with the input."""

    def __init__(self, in_channels: int, bins: Sequence[int] = (1, 2, 3, 6)) -> None:
        super().__init__()
        self.bins = tuple(bins)
        reduced = max(1, in_channels // len(self.bins))
        self.stages = nn.ModuleList(ConvBNReLU(in_channels, reduced, 1) for _ in self.bins)
        self.out_channels = in_channels + reduced * len(self.bins)

    def forward(self, x: Tensor) -> Tensor:
        size = x.shape[-2:]
        pooled = [
            F.interpolate(
                stage(F.adaptive_avg_pool2d(x, b)), size=size, mode="bilinear", align_corners=ALIGN_CORNERS
            )
            for b, stage in zip(self.bins, self.stages, strict=True)
        ]
        return torch.cat([x, *pooled], dim=1)


@HEADS.register("psp")
class PSPHead(DecodeHead):
    """Pyramid pooling head on ``feats[-1]``; ``channels`` defaults to c4/4 (128 for R18, 512 for R101)."""

    def __init__(
        self,
        in_channels: Sequence[int],
        num_classes: int,
        channels: int | None = None,
        dropout: float = 0.1,
        bins: Sequence[int] = (1, 2, 3, 6),
    ) -> None:
        c4 = int(in_channels[-1])
        super().__init__(num_classes, channels or max(1, c4 // 4))
        self.psp = PyramidPooling(c4, bins)
        self.bottleneck = ConvBNReLU(self.psp.out_channels, self.channels, 3)
        self.add_classifier(dropout)
        self.init_weights()

    def forward(self, feats: Sequence[Tensor]) -> SegOutput:
        feat = self.bottleneck(self.psp(feats[-1]))
        return SegOutput(logits=self.classify(feat), features=feat)

"""OCRNet head (Yuan, Chen & Wang, ECCV 2020, "Object-Contextual Representations for Semantic Segmentation").

Each pixel is described by the classes ("objects") around it: a soft object-region branch gives K
region maps; each region's representation is the region-weighted mean of the pixel features
(spatial gather); every pixel attends to the K region representations (scaled dot product) and the
result is concatenated with the pixel feature and fused. The region logits are trained against the
label too, so they are this head's auxiliary output.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

from ladseg.models.heads.base import HEADS, DecodeHead
from ladseg.models.layers import ConvBNReLU
from ladseg.models.segmentor import SegOutput, resize_logits


def spatial_gather(feats: Tensor, region_logits: Tensor) -> Tensor:
    """Region representations: softmax over pixels of each region map, then weighted feature mean.

    feats N x C x h x w, region_logits N x K x h x w -> N x C x K x 1.
    """
    probs = region_logits.flatten(2).softmax(dim=2)  # N x K x hw
    ctx = torch.bmm(probs, feats.flatten(2).transpose(1, 2))  # N x K x C
    return ctx.transpose(1, 2).unsqueeze(3)


class ObjectAttention(nn.Module):
    """Pixel-to-region attention: query from pixels, key/value from region representations."""

    def __init__(self, channels: int, key_channels: int) -> None:
        super().__init__()
        self.key_channels = key_channels
        self.query = nn.Sequential(ConvBNReLU(channels, key_channels), ConvBNReLU(key_channels, key_channels))
        self.key = nn.Sequential(ConvBNReLU(channels, key_channels), ConvBNReLU(key_channels, key_channels))
        self.value = ConvBNReLU(channels, key_channels)
        self.out = ConvBNReLU(key_channels, channels)

    def forward(self, feats: Tensor, regions: Tensor) -> Tensor:
        n, _, h, w = feats.shape
        q = self.query(feats).flatten(2).transpose(1, 2)  # N x hw x Ck
        k = self.key(regions).flatten(2)  # N x Ck x K
        v = self.value(regions).flatten(2).transpose(1, 2)  # N x K x Ck
        attn = (torch.bmm(q, k) * self.key_channels**-0.5).softmax(dim=-1)  # N x hw x K
        ctx = torch.bmm(attn, v).transpose(1, 2).reshape(n, self.key_channels, h, w)
        return self.out(ctx)


@HEADS.register("ocr")
class OCRHead(DecodeHead):
    """OCR decode head on ``feats[-1]`` with the soft object regions from ``feats[region_index]``."""

    def __init__(
        self,
        in_channels: Sequence[int],
        num_classes: int,
        channels: int | None = None,
        dropout: float = 0.1,
        region_index: int = -2,
        key_channels: int | None = None,
    ) -> None:
        c4, c_region = int(in_channels[-1]), int(in_channels[region_index])
        channels = channels or (512 if c4 >= 1024 else 256)
        key_channels = key_channels or channels // 2
        super().__init__(num_classes, channels)
        self.region_index = region_index
        # soft object regions: an FCN on the region stage (the auxiliary output)
        self.region_head = nn.Sequential(
            ConvBNReLU(c_region, channels, 3), nn.Dropout(dropout), nn.Conv2d(channels, num_classes, 1)
        )
        self.bottleneck = ConvBNReLU(c4, channels, 3)
        self.attention = ObjectAttention(channels, key_channels)
        self.fuse = ConvBNReLU(2 * channels, channels)
        self.add_classifier(dropout)
        self.init_weights()

    def forward(self, feats: Sequence[Tensor]) -> SegOutput:
        region_logits = self.region_head(feats[self.region_index])
        pixels = self.bottleneck(feats[-1])
        regions = spatial_gather(pixels, resize_logits(region_logits, pixels.shape[-2:]))
        context = self.attention(pixels, regions)
        fused = self.fuse(torch.cat([context, pixels], dim=1))
        logits = self.classify(fused)
        return SegOutput(logits=logits, features=fused, aux_logits=region_logits if self.training else None)

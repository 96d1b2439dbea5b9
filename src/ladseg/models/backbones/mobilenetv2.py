"""MobileNetV2 (Sandler et al., CVPR 2018) as a dilated segmentation backbone.

The layers are torchvision's ``mobilenet_v2().features[:18]`` (the 1280-channel 1x1 head conv is
dropped, as in DeepLabV3-MobileNetV2), so a torchvision ``.pth`` loads with its own key names.
Output stride 8/16 replaces the late depthwise strides by dilation (DeepLabV3's recipe); the block
that loses its stride keeps the previous dilation, the following ones get the doubled one.
"""

from __future__ import annotations

from pathlib import Path

from torch import Tensor, nn
from torchvision.models import mobilenet_v2
from torchvision.models.mobilenetv2 import InvertedResidual

from ladseg.errors import LadsegError
from ladseg.models.backbones.base import BACKBONES, Backbone
from ladseg.models.weights import load_pretrained, read_weights_file

# features[a:b] of each returned map: 24 ch @ /4, 32 @ /8, 96 @ /16, 320 @ /32
_STAGES = ((0, 4), (4, 7), (7, 14), (14, 18))
_OUT_CHANNELS = (24, 32, 96, 320)
_IGNORE = ("classifier.", "features.18.")  # the ImageNet head: not part of the backbone


def _depthwise_conv(block: InvertedResidual) -> nn.Conv2d:
    for m in block.conv.modules():
        if isinstance(m, nn.Conv2d) and m.groups > 1:
            return m
    raise AssertionError("an InvertedResidual without a depthwise conv")  # torchvision layout changed


@BACKBONES.register("mobilenetv2")
class MobileNetV2(Backbone):
    """MobileNetV2 trunk returning [c1 (24, /4), c2 (32, /8), c3 (96, /16), c4 (320, /32)] at OS 32."""

    def __init__(
        self, in_channels: int = 3, output_stride: int = 8, pretrained: str | Path | None = None
    ) -> None:
        super().__init__()
        if output_stride not in (8, 16, 32):
            raise LadsegError(f"mobilenetv2: output_stride must be 8, 16 or 32, got {output_stride}")
        if in_channels < 1:
            raise LadsegError(f"mobilenetv2: in_channels must be >= 1, got {in_channels}")
        self.in_channels = in_channels
        self.output_stride = output_stride
        self.features = nn.Sequential(*list(mobilenet_v2(weights=None).features.children())[:18])
        if in_channels != 3:
            old = self.features[0][0]
            self.features[0][0] = nn.Conv2d(in_channels, old.out_channels, 3, stride=2, padding=1, bias=False)
            nn.init.kaiming_normal_(self.features[0][0].weight, mode="fan_out")
        self.stem_channels, self.stem_stride = int(self.features[0][0].out_channels), 2
        self.strides: tuple[int, ...] = self._dilate(output_stride)
        self.out_channels: tuple[int, ...] = _OUT_CHANNELS
        if pretrained:
            load_pretrained(
                self,
                read_weights_file(pretrained),
                first_conv_key="features.0.0.weight",
                in_channels=in_channels,
                ignore_prefixes=_IGNORE,
            )

    def _dilate(self, output_stride: int) -> tuple[int, ...]:
        """Turn strides beyond ``output_stride`` into dilation; return the stride of each stage."""
        current, dilation = 2, 1  # after the stem conv
        strides = []
        for start, end in _STAGES:
            for idx in range(max(start, 1), end):
                conv = _depthwise_conv(self.features[idx])
                stride = conv.stride[0]
                block_dilation = dilation
                if stride > 1 and current >= output_stride:
                    dilation *= stride
                    conv.stride = (1, 1)
                    stride = 1
                current *= stride
                conv.dilation = (block_dilation, block_dilation)
                conv.padding = (block_dilation, block_dilation)
            strides.append(current)
        return tuple(strides)

    @property
    def first_conv(self) -> nn.Conv2d:
        return self.features[0][0]

    def forward_stem(self, x: Tensor) -> Tensor:
        """``features[0]``: conv (stride 2) -> BN -> ReLU6, 32 channels."""
        return self.features[0](x)

    def forward_stages(self, x: Tensor) -> list[Tensor]:
        feats = []
        for start, end in _STAGES:
            for idx in range(max(start, 1), end):  # features[0] is the stem
                x = self.features[idx](x)
            feats.append(x)
        return feats

"""STDC networks (Fan et al., CVPR 2021, "Rethinking BiSeNet for Real-time Semantic Segmentation").

An STDC module is four convs of shrinking width (1x1 to C/2, then 3x3 to C/4, C/8, C/8) whose
outputs are concatenated: a large receptive field from few parameters. In the stride-2 module the
first output is average-pooled and the second conv reads a stride-2 depthwise conv, so all parts
meet at the new resolution. STDC1 stacks [2, 2, 2] modules per stage, STDC2 [4, 5, 3].

STDC has no dilated variant: the trunk always reaches 1/32 and the STDC head fuses the 1/32 and
1/16 context back to 1/8 (the model's output stride). Module names follow the authors' release
(``features.N.conv_list.M.conv``), so their ImageNet files load with ``pretrained=path``.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import Tensor, nn

from ladseg.errors import LadsegError
from ladseg.models.backbones.base import BACKBONES, Backbone
from ladseg.models.layers import init_weights
from ladseg.models.weights import load_pretrained, read_weights_file

BASE = 64
BLOCKS_PER_MODULE = 4
# the authors' ImageNet head, not part of the trunk
_IGNORE = ("conv_last.", "fc.", "bn.", "linear.", "gap.")


class ConvX(nn.Module):
    """Conv (no bias) -> BN -> ReLU, named as in the authors' code."""

    def __init__(self, in_ch: int, out_ch: int, kernel: int = 3, stride: int = 1) -> None:
        super().__init__()
        self.conv = nn.Conv2d(in_ch, out_ch, kernel, stride, kernel // 2, bias=False)
        self.bn = nn.BatchNorm2d(out_ch)
        self.relu = nn.ReLU(inplace=True)

    def forward(self, x: Tensor) -> Tensor:
        return self.relu(self.bn(self.conv(x)))


class STDCModule(nn.Module):
    """Short-Term Dense Concatenate module: cat of convs with widths C/2, C/4, C/8, C/8."""

    def __init__(self, in_ch: int, out_ch: int, stride: int, blocks: int = BLOCKS_PER_MODULE) -> None:
        super().__init__()
        if stride not in (1, 2):
            raise ValueError(f"STDC module stride must be 1 or 2, got {stride}")
        self.stride = stride
        widths = [out_ch // 2 ** (i + 1) for i in range(blocks - 1)] + [out_ch // 2 ** (blocks - 1)]
        self.conv_list = nn.ModuleList([ConvX(in_ch, widths[0], kernel=1)])
        for i in range(1, blocks):
            self.conv_list.append(ConvX(widths[i - 1], widths[i], kernel=3))
        if stride == 2:
            half = widths[0]
            self.avd_layer = nn.Sequential(
                nn.Conv2d(half, half, 3, 2, 1, groups=half, bias=False), nn.BatchNorm2d(half)
            )
            self.skip = nn.AvgPool2d(3, 2, 1)

    def forward(self, x: Tensor) -> Tensor:
        first = self.conv_list[0](x)
        y = self.avd_layer(first) if self.stride == 2 else first
        outs = [self.skip(first) if self.stride == 2 else first]
        for conv in self.conv_list[1:]:
            y = conv(y)
            outs.append(y)
        return torch.cat(outs, dim=1)


class STDCNet(Backbone):
    """STDC trunk returning [feat4 (64, /4), feat8 (256, /8), feat16 (512, /16), feat32 (1024, /32)]."""

    def __init__(
        self,
        layers: tuple[int, int, int],
        in_channels: int = 3,
        output_stride: int = 8,
        pretrained: str | Path | None = None,
        name: str = "stdc",
    ) -> None:
        super().__init__()
        if output_stride not in (8, 32):
            raise LadsegError(
                f"{name}: output_stride must be 8 (the STDC model's 1/8 output) or 32 (its trunk), "
                f"got {output_stride}; STDC has no dilated variant"
            )
        if in_channels < 1:
            raise LadsegError(f"{name}: in_channels must be >= 1, got {in_channels}")
        self.in_channels = in_channels
        self.output_stride = output_stride
        modules: list[nn.Module] = [ConvX(in_channels, BASE // 2, 3, 2), ConvX(BASE // 2, BASE, 3, 2)]
        self._stage_ends = [1]  # index in ``features`` of the last module of each returned stage
        in_ch = BASE
        for stage, repeats in enumerate(layers):
            out_ch = BASE * 4 * 2**stage
            for i in range(repeats):
                modules.append(STDCModule(in_ch if i == 0 else out_ch, out_ch, 2 if i == 0 else 1))
            in_ch = out_ch
            self._stage_ends.append(len(modules) - 1)
        self.features = nn.ModuleList(modules)
        self.stem_channels, self.stem_stride = BASE // 2, 2
        self.out_channels: tuple[int, ...] = (BASE, BASE * 4, BASE * 8, BASE * 16)
        self.strides: tuple[int, ...] = (4, 8, 16, 32)
        init_weights(self)
        if pretrained:
            load_pretrained(
                self,
                read_weights_file(pretrained),
                first_conv_key="features.0.conv.weight",
                in_channels=in_channels,
                ignore_prefixes=_IGNORE,
            )

    @property
    def first_conv(self) -> nn.Conv2d:
        return self.features[0].conv

    def forward_stem(self, x: Tensor) -> Tensor:
        """``features[0]``: the first stride-2 ConvX (32 channels at 1/2)."""
        return self.features[0](x)

    def forward_stages(self, x: Tensor) -> list[Tensor]:
        feats = []
        ends = set(self._stage_ends)
        for i, module in enumerate(self.features):
            if i > 0:  # features[0] is the stem
                x = module(x)
            if i in ends:
                feats.append(x)
        return feats


@BACKBONES.register("stdc1")
def stdc1(in_channels: int = 3, output_stride: int = 8, pretrained: str | None = None) -> STDCNet:
    """STDC1 (the paper's STDC1, "STDCNet813"): modules per stage [2, 2, 2]."""
    return STDCNet((2, 2, 2), in_channels, output_stride, pretrained, name="stdc1")


@BACKBONES.register("stdc2")
def stdc2(in_channels: int = 3, output_stride: int = 8, pretrained: str | None = None) -> STDCNet:
    """STDC2 ("STDCNet1446"): modules per stage [4, 5, 3]."""
    return STDCNet((4, 5, 3), in_channels, output_stride, pretrained, name="stdc2")

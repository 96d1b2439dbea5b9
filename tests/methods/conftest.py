"""A tiny Segmentor (two conv stages + 1x1 head) so method tests run in milliseconds."""

from __future__ import annotations

from collections.abc import Callable

import pytest
import torch
from torch import Tensor, nn

from ladseg.models.segmentor import Segmentor, SegOutput


class TinyBackbone(nn.Module):
    def __init__(self, in_channels: int, bn: bool) -> None:
        super().__init__()
        self.in_channels = in_channels
        self.out_channels = (8, 16)
        self.strides = (2, 4)
        norm = nn.BatchNorm2d if bn else nn.Identity
        self.first_conv = nn.Conv2d(in_channels, 8, 3, stride=2, padding=1)
        self.stage1 = nn.Sequential(self.first_conv, norm(8), nn.ReLU())
        self.stage2 = nn.Sequential(nn.Conv2d(8, 16, 3, stride=2, padding=1), norm(16), nn.ReLU())

    def forward(self, x: Tensor) -> list[Tensor]:
        c1 = self.stage1(x)
        return [c1, self.stage2(c1)]


class TinyHead(nn.Module):
    def __init__(self, num_classes: int, width: int = 16) -> None:
        super().__init__()
        self.num_classes = num_classes
        self.conv = nn.Sequential(nn.Conv2d(16, width, 3, padding=1), nn.ReLU())
        self.cls = nn.Conv2d(width, num_classes, 1)

    def forward(self, feats: list[Tensor]) -> SegOutput:
        f = self.conv(feats[-1])
        return SegOutput(self.cls(f), f)


def make_tiny(
    in_channels: int = 3, num_classes: int = 3, bn: bool = True, aux: bool = True, width: int = 16
) -> Segmentor:
    aux_head = nn.Conv2d(8, num_classes, 1) if aux else None
    return Segmentor(TinyBackbone(in_channels, bn), TinyHead(num_classes, width), aux_head, name="tiny")


@pytest.fixture
def tiny() -> Callable[..., Segmentor]:
    return make_tiny


def toy_batch(n: int = 2, size: int = 16, num_classes: int = 3, seed: int = 0) -> dict[str, Tensor]:
    """Images whose colour tells the class (so a few steps can learn it), with some ignore pixels."""
    g = torch.Generator().manual_seed(seed)
    mask = torch.randint(0, num_classes, (n, size // 4, size // 4), generator=g)
    mask = mask.repeat_interleave(4, 1).repeat_interleave(4, 2)
    image = torch.stack([(mask == c).float() for c in range(3)], 1) + 0.1 * torch.randn(
        n, 3, size, size, generator=g
    )
    mask[:, :2, :2] = 255
    return {"image": image, "mask": mask}


@pytest.fixture
def batch() -> dict[str, Tensor]:
    return toy_batch()

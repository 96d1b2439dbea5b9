"""Helpers for the distillation-loss tests (imported by the test files): hand-made SegOutputs, small settings."""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from ladseg.models.segmentor import Segmentor, SegOutput

#: memory sizes small enough for CPU tests (CIRKD's are 20000 / 2000 / 4096 / 1024)
SMALL_MEMORY: dict[str, Any] = {
    "pixel_memory_size": 32,
    "region_memory_size": 8,
    "pixel_contrast_size": 64,
    "region_contrast_size": 16,
}

#: every feature/relation loss (all but the logit losses cwd, kd, mse), with parameters for the tests
OWN_LOSSES: dict[str, dict[str, Any]] = {
    "at": {},
    "fitnets": {},
    "cwd_feature": {},
    "dist": {},
    "skd": {},
    "ifvd": {},
    "cirkd_minibatch": {},
    "cirkd_memory": SMALL_MEMORY,
    "cirkd": SMALL_MEMORY,
}


def seg(features: Tensor, logits: Tensor) -> SegOutput:
    return SegOutput(logits=logits, features=features)


def random_pair(
    n: int = 2,
    cs: int = 6,
    ct: int = 10,
    k: int = 4,
    hs: int = 8,
    ht: int = 16,
    grad: bool = True,
) -> tuple[SegOutput, SegOutput, Tensor]:
    """Student and teacher outputs of different widths and sizes, and a mask with ignore pixels."""
    s = seg(torch.randn(n, cs, hs, hs, requires_grad=grad), torch.randn(n, k, hs, hs, requires_grad=grad))
    # the teacher's tensors require grad on purpose: a loss must never send gradients into them
    t = seg(torch.randn(n, ct, ht, ht, requires_grad=True), torch.randn(n, k, ht, ht, requires_grad=True))
    mask = torch.randint(0, k, (n, 4 * hs, 4 * hs))
    mask[:, :5] = 255
    return s, t, mask


class _TinyBackbone(nn.Module):
    """Two strided conv stages; ``strides`` sets the feature resolution (teacher and student may differ)."""

    def __init__(self, width: int, stride2: int) -> None:
        super().__init__()
        self.in_channels = 3
        self.first_conv = nn.Conv2d(3, width, 3, stride=2, padding=1)
        self.stage1 = nn.Sequential(self.first_conv, nn.BatchNorm2d(width), nn.ReLU())
        self.stage2 = nn.Sequential(
            nn.Conv2d(width, width, 3, stride=stride2, padding=1), nn.BatchNorm2d(width), nn.ReLU()
        )

    def forward(self, x: Tensor) -> list[Tensor]:
        c1 = self.stage1(x)
        return [c1, self.stage2(c1)]


class _TinyHead(nn.Module):
    def __init__(self, width: int, num_classes: int) -> None:
        super().__init__()
        self.num_classes = num_classes
        self.conv = nn.Sequential(nn.Conv2d(width, width, 3, padding=1), nn.BatchNorm2d(width), nn.ReLU())
        self.cls = nn.Conv2d(width, num_classes, 1)

    def forward(self, feats: list[Tensor]) -> SegOutput:
        f = self.conv(feats[-1])
        return SegOutput(self.cls(f), f)


def tiny_segmentor(width: int, num_classes: int, stride2: int = 2) -> Segmentor:
    """A Segmentor small enough for CPU training-step tests (features of ``width`` channels)."""
    aux = nn.Conv2d(width, num_classes, 1)
    return Segmentor(_TinyBackbone(width, stride2), _TinyHead(width, num_classes), aux, name="tiny")

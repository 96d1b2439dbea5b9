"""STDC segmentation head (Fan et al., CVPR 2021), the BiSeNet (Yu et al., ECCV 2018) decoder.

Context path: attention refinement (ARM) on the 1/32 and 1/16 features plus a global-context
vector, each up-sampled one level and smoothed by a 3x3 conv; the feature fusion module (FFM) joins
the 1/8 spatial feature with the 1/8 context and gives the 1/8 logits. Training adds two auxiliary
outputs on the context features and, with ``detail=True``, STDC's detail guidance: a 1-channel
boundary head on the 1/8 spatial feature trained against :func:`detail_targets` by
:func:`detail_loss`, which teaches the shallow stage boundary detail at no inference cost.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ladseg.errors import LadsegError
from ladseg.labels import IGNORE_INDEX
from ladseg.models.heads.base import HEADS, DecodeHead
from ladseg.models.layers import ConvBNReLU
from ladseg.models.segmentor import SegOutput, resize_logits

CONTEXT_CHANNELS = 128


class AttentionRefinement(nn.Module):
    """ARM: 3x3 conv, then channel re-weighting by a sigmoid of the globally pooled feature."""

    def __init__(self, in_ch: int, out_ch: int) -> None:
        super().__init__()
        self.conv = ConvBNReLU(in_ch, out_ch, 3)
        self.attention = nn.Sequential(nn.Conv2d(out_ch, out_ch, 1, bias=False), nn.BatchNorm2d(out_ch))

    def forward(self, x: Tensor) -> Tensor:
        x = self.conv(x)
        return x * torch.sigmoid(self.attention(F.adaptive_avg_pool2d(x, 1)))


class FeatureFusion(nn.Module):
    """FFM: concat spatial + context, 1x1 conv, then a squeeze-excitation style residual re-weighting."""

    def __init__(self, in_ch: int, out_ch: int) -> None:
        super().__init__()
        self.conv = ConvBNReLU(in_ch, out_ch, 1)
        self.attention = nn.Sequential(
            nn.Conv2d(out_ch, out_ch // 4, 1, bias=False),
            nn.ReLU(inplace=True),
            nn.Conv2d(out_ch // 4, out_ch, 1, bias=False),
            nn.Sigmoid(),
        )

    def forward(self, spatial: Tensor, context: Tensor) -> Tensor:
        x = self.conv(torch.cat([spatial, context], dim=1))
        return x + x * self.attention(F.adaptive_avg_pool2d(x, 1))


class OutputHead(nn.Sequential):
    """3x3 ConvBNReLU -> Dropout -> 1x1 classifier (BiSeNetOutput)."""

    def __init__(self, in_ch: int, mid_ch: int, out_ch: int, dropout: float = 0.0) -> None:
        super().__init__(ConvBNReLU(in_ch, mid_ch, 3), nn.Dropout(dropout), nn.Conv2d(mid_ch, out_ch, 1))


def _up(x: Tensor, like: Tensor) -> Tensor:
    """Nearest up-sampling to ``like``'s size, as the authors' context path does."""
    if x.shape[-2:] == like.shape[-2:]:
        return x
    return F.interpolate(x, size=like.shape[-2:], mode="nearest")


@HEADS.register("stdc_head")
class STDCHead(DecodeHead):
    """Reads feats[-3] (1/8 spatial), feats[-2] (1/16), feats[-1] (1/32); logits at 1/8."""

    def __init__(
        self,
        in_channels: Sequence[int],
        num_classes: int,
        channels: int | None = None,
        dropout: float = 0.1,
        detail: bool = False,
        aux_channels: int = 64,
    ) -> None:
        if len(in_channels) < 3:
            raise LadsegError(
                f"stdc_head needs the 1/8, 1/16 and 1/32 features (3 stages), got {len(in_channels)}"
            )
        c8, c16, c32 = (int(c) for c in in_channels[-3:])
        channels = channels or 256
        super().__init__(num_classes, channels)
        self.detail = detail
        self.global_context = ConvBNReLU(c32, CONTEXT_CHANNELS, 1)
        self.arm32 = AttentionRefinement(c32, CONTEXT_CHANNELS)
        self.arm16 = AttentionRefinement(c16, CONTEXT_CHANNELS)
        self.refine32 = ConvBNReLU(CONTEXT_CHANNELS, CONTEXT_CHANNELS, 3)
        self.refine16 = ConvBNReLU(CONTEXT_CHANNELS, CONTEXT_CHANNELS, 3)
        self.ffm = FeatureFusion(c8 + CONTEXT_CHANNELS, channels)
        self.seg = ConvBNReLU(channels, channels, 3)
        self.add_classifier(dropout)
        # auxiliary outputs on the context at 1/8 (from the 1/16 ARM) and at 1/16 (from the 1/32 ARM)
        self.aux8 = OutputHead(CONTEXT_CHANNELS, aux_channels, num_classes, dropout)
        self.aux16 = OutputHead(CONTEXT_CHANNELS, aux_channels, num_classes, dropout)
        self.detail_head = OutputHead(c8, aux_channels, 1) if detail else None
        self.init_weights()

    def forward(self, feats: Sequence[Tensor]) -> SegOutput:
        f8, f16, f32 = feats[-3], feats[-2], feats[-1]
        context = self.global_context(F.adaptive_avg_pool2d(f32, 1))
        ctx16 = self.refine32(_up(self.arm32(f32) + context, f16))  # 1/32 context at 1/16
        ctx8 = self.refine16(_up(self.arm16(f16) + ctx16, f8))  # 1/16 context at 1/8
        fused = self.ffm(f8, ctx8)
        logits = self.classify(self.seg(fused))
        out = SegOutput(logits=logits, features=fused)
        if self.training:
            out.aux_logits = self.aux8(ctx8)
            out.extras["aux16"] = self.aux16(ctx16)
            if self.detail_head is not None:
                out.extras["detail"] = self.detail_head(f8)
        return out


# STDC's Detail Aggregation: Laplacian boundaries at strides 1, 2, 4, fused by fixed 1x1 weights
_LAPLACIAN = torch.tensor([[-1.0, -1.0, -1.0], [-1.0, 8.0, -1.0], [-1.0, -1.0, -1.0]])
_FUSE_WEIGHTS = (0.6, 0.3, 0.1)
_THRESHOLD = 0.1


def _boundaries(onehot: Tensor, stride: int) -> Tensor:
    """1 where a pixel (sampled every ``stride``) has a neighbour of another label, else 0."""
    c = onehot.shape[1]
    kernel = _LAPLACIAN.to(onehot).expand(c, 1, 3, 3)
    padded = F.pad(onehot, (1, 1, 1, 1), mode="replicate")  # the image border is no boundary
    edges = F.conv2d(padded, kernel, stride=stride, groups=c).clamp(min=0).amax(dim=1, keepdim=True)
    return (edges > _THRESHOLD).to(onehot.dtype)


@torch.no_grad()
def detail_targets(mask: Tensor, num_classes: int, ignore_index: int = IGNORE_INDEX) -> Tensor:
    """Binary boundary map N x 1 x H x W of a label mask N x H x W (STDC's detail ground truth).

    The Laplacian runs on each class's one-hot map (ignore is one more region, as in the authors'
    code, whose Laplacian on raw ids also marks the ignore band), so both sides of a boundary count
    whatever the class ids are. Stride-2 and stride-4 maps are nearest up-sampled and fused with
    the weights 0.6 / 0.3 / 0.1, then thresholded at 0.1.
    """
    if mask.dim() != 3:
        raise LadsegError(f"detail_targets expects a N x H x W label mask, got shape {tuple(mask.shape)}")
    mask = mask.long()
    bad = (mask < 0) | ((mask >= num_classes) & (mask != ignore_index))
    if bool(bad.any()):
        raise LadsegError(
            f"detail_targets: labels must be in [0, {num_classes}) or {ignore_index} (ignore), "
            f"found {sorted(set(mask[bad].unique().tolist()))[:5]}"
        )
    ids = torch.where(mask == ignore_index, torch.full_like(mask, num_classes), mask)
    onehot = F.one_hot(ids, num_classes + 1).permute(0, 3, 1, 2).float()
    size = mask.shape[-2:]
    fused = torch.zeros(mask.shape[0], 1, *size, device=mask.device)
    for weight, stride in zip(_FUSE_WEIGHTS, (1, 2, 4), strict=True):
        edges = _boundaries(onehot, stride)
        fused += weight * F.interpolate(edges, size=size, mode="nearest")
    return (fused > _THRESHOLD).float()


def detail_loss(logits: Tensor, target: Tensor, smooth: float = 1.0) -> Tensor:
    """STDC's detail loss: binary cross-entropy + Dice on boundary logits (N x 1 x h x w).

    The logits are up-sampled to the target size; the Dice term counters the rarity of boundary
    pixels that makes BCE alone predict "no boundary" everywhere.
    """
    if target.dim() == 3:
        target = target.unsqueeze(1)
    logits = resize_logits(logits, target.shape[-2:])
    target = target.to(logits.dtype)
    bce = F.binary_cross_entropy_with_logits(logits, target)
    probs = torch.sigmoid(logits).flatten(1)
    flat = target.flatten(1)
    dice = 1 - (2 * (probs * flat).sum(1) + smooth) / (probs.sum(1) + flat.sum(1) + smooth)
    return bce + dice.mean()

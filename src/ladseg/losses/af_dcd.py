"""Af-DCD: augmentation-free dense contrastive distillation (Fan et al., NeurIPS 2023), as the authors' code.

On the backbone's last stage (``c4``, the tensor the official ``train_ocmgd.py`` passes as ``outputs[-2]``)::

    s' = P(M * A(s))           A: 1x1 conv to the teacher's width (with bias; identity when widths match)
                               M: a keep-mask over positions (random, 75 % masked), P: a 3x3 conv projector
    fd  = sum((s' - t)^2) / N                                         masked feature mimicking
    ctr = sum_rows CE([-|s'_r - t_r|_1, -|s'_r - t_q|_1 for q in other channel groups] / tau) / (N h w)

For ``ctr`` both maps are max-pooled (``pool_size`` 4), cut into ``patch_size`` x ``patch_size`` patches and
their channels into ``partitions`` groups: a row r is one (position, group) of a patch; its positive is the
teacher's same (position, group), its negatives the teacher's (position, group) pairs of the other groups in
that patch (omni-contrasting). The loss is ``fd_weight * fd + ctr_weight * ctr`` (the official
``--lambda-fd`` / ``--lambda-ctr``; defaults of its Cityscapes DeepLabV3-R18 script).
"""

from __future__ import annotations

from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ladseg.errors import ConfigError
from ladseg.losses.base import IGNORE_INDEX, LOSSES, DistillLoss
from ladseg.losses.common import feature_pair, positive
from ladseg.models.segmentor import BACKBONE_KEY, SegOutput

MASKS = ("random", "center")
PROJECTORS = ("plain", "enhanced")


def keep_mask(shape: tuple[int, int, int], kind: str, ratio: float, device: torch.device) -> Tensor:
    """N x 1 x h x w mask of the positions the student keeps (1) or loses (0).

    ``random``: each position is lost with probability ``ratio`` (the authors' ``rand_mask``);
    ``center``: the middle third of each side is lost (their fixed mask).
    """
    n, h, w = shape
    if kind == "random":
        return (torch.rand(n, 1, h, w, device=device) <= 1.0 - ratio).float()
    mask = torch.ones(n, 1, h, w, device=device)
    mask[:, :, h // 3 : 2 * h // 3, w // 3 : 2 * w // 3] = 0
    return mask


class EnhancedProjector(nn.Module):
    """The authors' enhanced projector: two 3x3 conv-ReLU blocks, each read out by a 3x3 conv, averaged."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.block1 = nn.Sequential(nn.Conv2d(channels, channels, 3, padding=1), nn.ReLU(inplace=True))
        self.block2 = nn.Sequential(nn.Conv2d(channels, channels, 3, padding=1), nn.ReLU(inplace=True))
        self.out1 = nn.Conv2d(channels, channels, 3, padding=1)
        self.out2 = nn.Conv2d(channels, channels, 3, padding=1)

    def forward(self, x: Tensor) -> Tensor:
        x1 = self.block1(x)
        x2 = self.block2(x1)
        return (self.out1(x1) + self.out2(x2)) / 2.0


def build_projector(kind: str, channels: int) -> nn.Module:
    """``plain``: conv3x3-ReLU-conv3x3 (the authors' default); ``enhanced``: :class:`EnhancedProjector`."""
    if kind == "enhanced":
        return EnhancedProjector(channels)
    return nn.Sequential(
        nn.Conv2d(channels, channels, 3, padding=1),
        nn.ReLU(inplace=True),
        nn.Conv2d(channels, channels, 3, padding=1),
    )


def contrast_grid(x: Tensor, pool_size: int, crop: int, patch: int) -> Tensor:
    """The map the contrast reads.

    Max-pooled by ``pool_size`` (0: not pooled), cut to the top-left ``crop`` x ``crop`` (0: whole map; the
    authors' CamVid branch crops 44 without pooling), then to whole patches. A map smaller than one patch
    is one patch (the authors' code fails there).
    """
    if pool_size > 0:
        x = F.max_pool2d(x, pool_size)
    if crop > 0:
        x = x[..., :crop, :crop]
    h, w = x.shape[-2:]
    ph, pw = min(patch, h), min(patch, w)
    return x[..., : h - h % ph, : w - w % pw]


def partition_rows(x: Tensor, ph: int, pw: int, groups: int) -> Tensor:
    """N x C x h x w -> (N * patches) x (ph * pw * groups) x (C / groups); row = (position in patch, group)."""
    n, c, h, w = x.shape
    x = x.reshape(n, groups, c // groups, h // ph, ph, w // pw, pw)
    return x.permute(0, 3, 5, 4, 6, 1, 2).reshape(-1, ph * pw * groups, c // groups)


def omni_contrast(s: Tensor, t: Tensor, tau: float, groups: int, patch: int) -> Tensor:
    """Sum over rows of the InfoNCE cross-entropy (negative L1 distances / tau), divided by N * h * w.

    ``s``/``t``: the (pooled) student and teacher maps of the same shape; positives are the same (position,
    group) of the teacher, negatives the teacher's rows of the other channel groups in the patch.
    """
    n, _, h, w = s.shape
    ph, pw = min(patch, h), min(patch, w)
    rs, rt = partition_rows(s, ph, pw, groups), partition_rows(t, ph, pw, groups)
    logits = -torch.cdist(rs, rt, p=1) / tau  # B x R x R
    group = torch.arange(rs.shape[1], device=s.device) % groups
    same_group = group[:, None] == group[None, :]
    eye = torch.eye(rs.shape[1], dtype=torch.bool, device=s.device)
    candidates = logits.masked_fill(same_group & ~eye, float("-inf"))  # the positive and the negatives
    per_row = torch.logsumexp(candidates, dim=-1) - logits.diagonal(dim1=-2, dim2=-1)
    return per_row.sum() / (n * h * w)


@LOSSES.register("af_dcd")
class AfDCDLoss(DistillLoss):
    """Af-DCD on the backbone's last stage: masked feature mimicking + omni-contrast (see the module doc).

    ``fd_weight`` 2e-6 and ``ctr_weight`` 0.005 are the official Cityscapes DeepLabV3 R101 -> R18 script's
    ``--lambda-fd`` / ``--lambda-ctr``; ``tau`` 0.07, ``partitions`` (M) 16, ``pool_size`` 4, ``patch_size`` 4,
    ``mask_ratio`` 0.75 are its ``OmniContrastiveFeatureLoss`` defaults. ``mask``: ``random`` or ``center``;
    ``projector``: ``plain`` (the class default) or ``enhanced``; ``crop``: the CamVid branch's 44 (with
    ``pool_size: 0``). The teacher's width must be a multiple of ``partitions``.
    """

    default_weight: ClassVar[float] = 1.0
    feature_level: ClassVar[str] = "backbone"

    def __init__(
        self,
        student_channels: int,
        teacher_channels: int,
        num_classes: int,
        fd_weight: float = 2e-6,
        ctr_weight: float = 0.005,
        tau: float = 0.07,
        partitions: int = 16,
        pool_size: int = 4,
        patch_size: int = 4,
        crop: int = 0,
        mask: str = "random",
        mask_ratio: float = 0.75,
        projector: str = "plain",
        *,
        ignore_index: int = IGNORE_INDEX,
    ) -> None:
        super().__init__(student_channels, teacher_channels, num_classes, ignore_index=ignore_index)
        _check_options(teacher_channels, partitions, pool_size, patch_size, crop, mask, mask_ratio, projector)
        if fd_weight < 0 or ctr_weight < 0:
            raise ConfigError(f"af_dcd fd_weight and ctr_weight must be >= 0, got {fd_weight}, {ctr_weight}")
        self.fd_weight, self.ctr_weight = float(fd_weight), float(ctr_weight)
        self.tau = positive("af_dcd tau", tau)
        self.partitions, self.pool_size, self.patch_size = int(partitions), int(pool_size), int(patch_size)
        self.crop, self.mask, self.mask_ratio = int(crop), mask, float(mask_ratio)
        self.align: nn.Module = nn.Identity()
        if student_channels != teacher_channels:
            self.align = nn.Conv2d(student_channels, teacher_channels, 1)
        self.projector = build_projector(projector, teacher_channels)

    def forward(self, student: SegOutput, teacher: SegOutput, mask: Tensor) -> Tensor:
        s, t = feature_pair(_backbone(student), _backbone(teacher))
        s = self.align(s)
        n, _, h, w = t.shape
        s = self.projector(s * keep_mask((n, h, w), self.mask, self.mask_ratio, s.device))
        fd = (s - t).pow(2).sum() / n
        ps = contrast_grid(s, self.pool_size, self.crop, self.patch_size)
        pt = contrast_grid(t, self.pool_size, self.crop, self.patch_size)
        ctr = omni_contrast(ps, pt, self.tau, self.partitions, self.patch_size)
        return self.fd_weight * fd + self.ctr_weight * ctr


def _backbone(out: SegOutput) -> Tensor:
    feat = out.extras.get(BACKBONE_KEY)
    if feat is None:
        raise ConfigError("af_dcd reads the backbone's last stage: run the networks with keep_backbone=True")
    return feat


def _check_options(
    teacher_channels: int,
    partitions: int,
    pool_size: int,
    patch_size: int,
    crop: int,
    mask: str,
    mask_ratio: float,
    projector: str,
) -> None:
    """One-line ConfigErrors for values (and teacher widths) the formula cannot take."""
    if partitions < 1 or teacher_channels % partitions:
        raise ConfigError(
            f"af_dcd: the teacher's backbone width {teacher_channels} is not a multiple of partitions={partitions}; "
            "teachers whose last stage cannot be split in equal channel groups need another partitions value"
        )
    if pool_size < 0 or patch_size < 1 or crop < 0:
        raise ConfigError(
            f"af_dcd: pool_size and crop must be >= 0, patch_size >= 1; got {pool_size}, {crop}, {patch_size}"
        )
    if mask not in MASKS:
        raise ConfigError(f"af_dcd mask must be one of {', '.join(MASKS)}, got {mask!r}")
    if not 0.0 <= mask_ratio < 1.0:
        raise ConfigError(f"af_dcd mask_ratio must be in [0, 1), got {mask_ratio}")
    if projector not in PROJECTORS:
        raise ConfigError(f"af_dcd projector must be one of {', '.join(PROJECTORS)}, got {projector!r}")


__all__ = [
    "AfDCDLoss",
    "EnhancedProjector",
    "build_projector",
    "contrast_grid",
    "keep_mask",
    "omni_contrast",
    "partition_rows",
]

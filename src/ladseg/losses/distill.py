"""Logit distillation losses: CWD, pixel-wise KD and MSE.

The plain functions (``cwd_loss``, ``pixel_kl_loss``, ``logit_mse_loss``) are shared with the LAD
teacher's dual-path consistency term; the registered classes wrap them for the ``distill`` method.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import ClassVar

import torch.nn.functional as F
from torch import Tensor, nn

from ladseg.losses import LOSSES
from ladseg.losses.base import DistillLoss, align_to
from ladseg.models.segmentor import SegOutput


def cwd_loss(s_logits: Tensor, t_logits: Tensor, tau: float = 4.0) -> Tensor:
    """Channel-wise distillation (Shu et al., ICCV 2021).

    Each channel (n, c) becomes a distribution over the H*W locations (softmax of z / tau); the loss is
    ``tau^2 / (N*C) * sum p_t * (log p_t - log p_s)``. Inputs must have the same shape.
    """
    n, c = s_logits.shape[:2]
    log_ps = F.log_softmax(s_logits.flatten(2).float() / tau, dim=-1)
    log_pt = F.log_softmax(t_logits.flatten(2).float() / tau, dim=-1)
    kl = (log_pt.exp() * (log_pt - log_ps)).sum()
    return kl * (tau**2) / (n * c)


def pixel_kl_loss(
    s_logits: Tensor, t_logits: Tensor, tau: float = 1.0, mask: Tensor | None = None, ignore_index: int = 255
) -> Tensor:
    """Pixel-wise KD (Hinton et al. 2015, applied per pixel as in SKD/CIRKD): ``tau^2 * mean KL(p_t || p_s)``.

    The softmax is over classes at each pixel. With ``mask`` (N x H' x W' labels at any size, nearest-resized
    to the logits), ignore pixels are left out of the mean; without it every pixel counts (CIRKD's choice).
    """
    log_ps = F.log_softmax(s_logits.float() / tau, dim=1)
    log_pt = F.log_softmax(t_logits.float() / tau, dim=1)
    kl = (log_pt.exp() * (log_pt - log_ps)).sum(dim=1)  # N x H x W
    if mask is not None:
        if mask.shape[-2:] != kl.shape[-2:]:
            mask = F.interpolate(mask[:, None].float(), size=kl.shape[-2:], mode="nearest")[:, 0].long()
        valid = (mask != ignore_index).to(kl.dtype)
        return (kl * valid).sum() / valid.sum().clamp_min(1.0) * (tau**2)
    return kl.mean() * (tau**2)


def logit_mse_loss(s_logits: Tensor, t_logits: Tensor) -> Tensor:
    """Mean squared difference of logits (a temperature-free baseline)."""
    return F.mse_loss(s_logits.float(), t_logits.float())


class _LogitLoss(DistillLoss):
    """Shared plumbing: pick logits or features, align the teacher's size to the student's."""

    def _pair(self, student: SegOutput, teacher: SegOutput, target: str) -> tuple[Tensor, Tensor]:
        if target == "logits":
            return align_to(student.logits, teacher.logits)
        s, t = align_to(student.features, teacher.features)
        return self.adapter(s), t


@LOSSES.register("cwd")
class CWDLoss(_LogitLoss):
    """CWD on the main logits (default) or on decoder features (a 1x1 conv adapter when widths differ)."""

    default_weight: ClassVar[float] = 3.0

    def __init__(
        self,
        student_channels: int,
        teacher_channels: int,
        num_classes: int,
        tau: float = 4.0,
        target: str = "logits",
    ) -> None:
        super().__init__(student_channels, teacher_channels, num_classes)
        if target not in ("logits", "features"):
            raise ValueError(f"cwd target must be 'logits' or 'features', got {target!r}")
        if tau <= 0:
            raise ValueError(f"cwd tau must be > 0, got {tau}")
        self.tau = float(tau)
        self.target = target
        self.adapter: nn.Module = nn.Identity()
        if target == "features" and student_channels != teacher_channels:
            self.adapter = nn.Conv2d(student_channels, teacher_channels, 1, bias=False)

    def forward(self, student: SegOutput, teacher: SegOutput, mask: Tensor) -> Tensor:
        s, t = self._pair(student, teacher, self.target)
        return cwd_loss(s, t, self.tau)


@LOSSES.register("kd")
class PixelKDLoss(_LogitLoss):
    """Pixel-wise KL on logits; defaults (tau 1, weight 1) follow CIRKD's ``train_kd.py`` (SKD uses weight 10).

    As CIRKD's ``CriterionKD`` (``kl_div(..., reduction="batchmean")`` over the N*h*w pixel rows), the
    mean runs over **all** pixels by default; ``exclude_ignore: true`` averages over labelled pixels
    only (ignore pixels are 25-40% of a VOC crop, so that weighs the term x1.4-1.7 more).
    """

    default_weight: ClassVar[float] = 1.0

    def __init__(
        self,
        student_channels: int,
        teacher_channels: int,
        num_classes: int,
        tau: float = 1.0,
        exclude_ignore: bool = False,
        ignore_index: int = 255,
    ) -> None:
        super().__init__(student_channels, teacher_channels, num_classes)
        if tau <= 0:
            raise ValueError(f"kd tau must be > 0, got {tau}")
        self.tau = float(tau)
        self.exclude_ignore = exclude_ignore
        self.ignore_index = ignore_index

    def forward(self, student: SegOutput, teacher: SegOutput, mask: Tensor) -> Tensor:
        s, t = align_to(student.logits, teacher.logits)
        m = mask if self.exclude_ignore else None
        return pixel_kl_loss(s, t, self.tau, m, self.ignore_index)


@LOSSES.register("mse")
class LogitMSELoss(_LogitLoss):
    """MSE between main logits (teacher resized to the student's size)."""

    default_weight: ClassVar[float] = 1.0

    def forward(self, student: SegOutput, teacher: SegOutput, mask: Tensor) -> Tensor:
        s, t = align_to(student.logits, teacher.logits)
        return logit_mse_loss(s, t)


#: the LAD teacher's dual-path consistency D(s -> t), by config name; ``t`` should already be detached.
CONSISTENCY: dict[str, Callable[[Tensor, Tensor, float], Tensor]] = {
    "cwd": cwd_loss,
    "kl": lambda s, t, tau: pixel_kl_loss(s, t, tau),
    "mse": lambda s, t, tau: logit_mse_loss(s, t),
}


__all__ = [
    "CWDLoss",
    "LogitMSELoss",
    "PixelKDLoss",
    "CONSISTENCY",
    "cwd_loss",
    "logit_mse_loss",
    "pixel_kl_loss",
]

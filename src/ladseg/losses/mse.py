"""Logit MSE (``mse``): a temperature-free baseline."""

from __future__ import annotations

from typing import ClassVar

import torch.nn.functional as F
from torch import Tensor

from ladseg.losses.base import LOSSES, DistillLoss, align_to
from ladseg.models.segmentor import SegOutput


def logit_mse_loss(s_logits: Tensor, t_logits: Tensor) -> Tensor:
    """Mean squared difference of logits (a temperature-free baseline)."""
    return F.mse_loss(s_logits.float(), t_logits.float())


@LOSSES.register("mse")
class LogitMSELoss(DistillLoss):
    """MSE between main logits (teacher resized to the student's size)."""

    default_weight: ClassVar[float] = 1.0

    def forward(self, student: SegOutput, teacher: SegOutput, mask: Tensor) -> Tensor:
        s, t = align_to(student.logits, teacher.logits)
        return logit_mse_loss(s, t)


__all__ = ["LogitMSELoss", "logit_mse_loss"]

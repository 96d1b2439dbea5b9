"""FitNets hints (``fitnets``, Romero et al., ICLR 2015) on decoder features."""

from __future__ import annotations

from typing import ClassVar

import torch.nn.functional as F
from torch import Tensor

from ladseg.losses.base import IGNORE_INDEX, LOSSES, DistillLoss
from ladseg.losses.common import conv_adapter, feature_pair
from ladseg.models.segmentor import SegOutput


@LOSSES.register("fitnets")
class FitNetsLoss(DistillLoss):
    """FitNets hints (Romero et al., ICLR 2015): MSE between adapted student and teacher features.

    The regressor is a 1x1 conv to the teacher's width, without BatchNorm as CIRKD's ``CriterionFitNet``
    (``bn: true`` adds one); ``adapter: null`` builds it only when the widths differ (CIRKD's pairs
    always differ), ``true`` always, ``false`` never. FitNets trains hints in a separate stage, so the
    paper has no one-stage weight; the default 10 is CIRKD's segmentation setting (``--lambda-fitnet 10``).
    """

    default_weight: ClassVar[float] = 10.0

    def __init__(
        self,
        student_channels: int,
        teacher_channels: int,
        num_classes: int,
        adapter: bool | None = None,
        bn: bool = False,
        *,
        ignore_index: int = IGNORE_INDEX,
    ) -> None:
        super().__init__(student_channels, teacher_channels, num_classes, ignore_index=ignore_index)
        self.adapter = conv_adapter(student_channels, teacher_channels, bn=bool(bn), wanted=adapter)

    def forward(self, student: SegOutput, teacher: SegOutput, mask: Tensor) -> Tensor:
        s, t = feature_pair(student.features, teacher.features)
        return F.mse_loss(self.adapter(s), t)


__all__ = ["FitNetsLoss"]

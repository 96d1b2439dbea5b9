"""Feature-matching baselines: attention transfer (AT) and FitNets hints, on decoder features."""

from __future__ import annotations

from typing import ClassVar

import torch.nn.functional as F
from torch import Tensor

from ladseg.losses import LOSSES
from ladseg.losses.base import DistillLoss
from ladseg.losses.kd_utils import conv_adapter, feature_pair, positive
from ladseg.models.segmentor import SegOutput


def attention_map(feat: Tensor, p: float = 2.0) -> Tensor:
    """AT's spatial attention: mean over channels of ``|F|^p``, flattened and L2-normalised (N x h*w)."""
    return F.normalize(feat.abs().pow(p).mean(dim=1).flatten(1), dim=1)


def at_loss(s_feat: Tensor, t_feat: Tensor, p: float = 2.0) -> Tensor:
    """Mean over (N, h*w) of the squared difference of the normalised attention maps (widths may differ)."""
    return (attention_map(s_feat, p) - attention_map(t_feat, p)).pow(2).mean()


@LOSSES.register("at")
class ATLoss(DistillLoss):
    """Attention transfer (Zagoruyko & Komodakis, ICLR 2017) on the decoder features.

    Channel widths need no adapter: the attention map averages over channels. The default weight
    500 is the paper's beta/2 with beta = 1e3 applied to the *mean* (the official code's
    ``(at(x) - at(y)).pow(2).mean()``); CIRKD's segmentation benchmark uses 1e4 instead, because
    the mean over a 64x64 map is much smaller than over CIFAR's 8x8 to 32x32 maps.
    """

    default_weight: ClassVar[float] = 500.0

    def __init__(
        self, student_channels: int, teacher_channels: int, num_classes: int, p: float = 2.0
    ) -> None:
        super().__init__(student_channels, teacher_channels, num_classes)
        self.p = positive("at p", p)

    def forward(self, student: SegOutput, teacher: SegOutput, mask: Tensor) -> Tensor:
        s, t = feature_pair(student.features, teacher.features)
        return at_loss(s, t, self.p)


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
    ) -> None:
        super().__init__(student_channels, teacher_channels, num_classes)
        self.adapter = conv_adapter(student_channels, teacher_channels, bn=bool(bn), wanted=adapter)

    def forward(self, student: SegOutput, teacher: SegOutput, mask: Tensor) -> Tensor:
        s, t = feature_pair(student.features, teacher.features)
        return F.mse_loss(self.adapter(s), t)


__all__ = ["ATLoss", "FitNetsLoss", "at_loss", "attention_map"]

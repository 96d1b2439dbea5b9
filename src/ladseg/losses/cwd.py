"""Channel-wise distillation (Shu et al., ICCV 2021): on logits (``cwd``) and on decoder features (``cwd_feature``).

One formula, :func:`cwd_loss`; the feature variant adds the width adapter and CIRKD's normalisation.
"""

from __future__ import annotations

from typing import ClassVar

from torch import Tensor

from ladseg.errors import ConfigError
from ladseg.losses.base import IGNORE_INDEX, LOSSES, DistillLoss, align_to
from ladseg.losses.common import conv_adapter, feature_pair, positive, softened_kl
from ladseg.models.segmentor import SegOutput


def cwd_loss(s_logits: Tensor, t_logits: Tensor, tau: float = 4.0) -> Tensor:
    """Channel-wise distillation (Shu et al., ICCV 2021).

    Each channel (n, c) becomes a distribution over the H*W locations (softmax of z / tau); the loss is
    ``tau^2 / (N*C) * sum p_t * (log p_t - log p_s)``. Inputs must have the same shape.
    """
    n, c = s_logits.shape[:2]
    kl = softened_kl(s_logits.flatten(2).float(), t_logits.flatten(2).float(), tau, dim=-1).sum()
    return kl * (tau**2) / (n * c)


@LOSSES.register("cwd")
class CWDLoss(DistillLoss):
    """CWD on the main logits (teacher resized to the student's size); tau 4, weight 3 as the LAD student."""

    default_weight: ClassVar[float] = 3.0

    def __init__(
        self,
        student_channels: int,
        teacher_channels: int,
        num_classes: int,
        tau: float = 4.0,
        *,
        ignore_index: int = IGNORE_INDEX,
    ) -> None:
        super().__init__(student_channels, teacher_channels, num_classes, ignore_index=ignore_index)
        self.tau = positive("cwd tau", tau)

    def forward(self, student: SegOutput, teacher: SegOutput, mask: Tensor) -> Tensor:
        s, t = align_to(student.logits, teacher.logits)
        return cwd_loss(s, t, self.tau)


@LOSSES.register("cwd_feature")
class CWDFeatureLoss(DistillLoss):
    """CWD on the features before the classifier.

    Each channel of the adapted student map and of the teacher map is a softmax over the h*w
    locations at temperature ``tau``; the loss is ``tau^2/(N*C) * sum KL(p_t || p_s)``.
    A 1x1 conv (no bias, as in CIRKD) maps the student's width to the teacher's when they differ
    (``adapter: true`` always, ``false`` never). Defaults tau 4 and weight 50 are CIRKD's
    feature-CWD setting (``--lambda-cwd-fea 50``).

    ``normalize_by``: C is the student's width (``student``, default: CIRKD's ``CriterionCWD`` reads
    ``n, c`` before its adapter) or the teacher's (``teacher``: the CWD paper's per-channel mean over
    the channels compared; half the weight for a 128 -> 256 adapter).
    """

    default_weight: ClassVar[float] = 50.0

    def __init__(
        self,
        student_channels: int,
        teacher_channels: int,
        num_classes: int,
        tau: float = 4.0,
        adapter: bool | None = None,
        normalize_by: str = "student",
        *,
        ignore_index: int = IGNORE_INDEX,
    ) -> None:
        super().__init__(student_channels, teacher_channels, num_classes, ignore_index=ignore_index)
        self.tau = positive("cwd_feature tau", tau)
        self.adapter = conv_adapter(student_channels, teacher_channels, bn=False, wanted=adapter)
        if normalize_by not in ("student", "teacher"):
            raise ConfigError(
                f"cwd_feature normalize_by must be 'student' or 'teacher', got {normalize_by!r}"
            )
        self.normalize_by = normalize_by

    def forward(self, student: SegOutput, teacher: SegOutput, mask: Tensor) -> Tensor:
        s, t = feature_pair(student.features, teacher.features)
        loss = cwd_loss(self.adapter(s), t, self.tau)  # divided by N * (teacher's width)
        if self.normalize_by == "student":
            loss = loss * (t.shape[1] / s.shape[1])
        return loss


__all__ = ["CWDFeatureLoss", "CWDLoss", "cwd_loss"]

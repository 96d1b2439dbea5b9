"""Channel-wise distillation on decoder features (the logits variant is ``cwd`` in ``distill.py``)."""

from __future__ import annotations

from typing import ClassVar

from torch import Tensor

from ladseg.errors import ConfigError
from ladseg.losses import LOSSES
from ladseg.losses.base import DistillLoss
from ladseg.losses.distill import cwd_loss
from ladseg.losses.kd_utils import conv_adapter, feature_pair, positive
from ladseg.models.segmentor import SegOutput


@LOSSES.register("cwd_feature")
class CWDFeatureLoss(DistillLoss):
    """CWD (Shu et al., ICCV 2021) on the features before the classifier.

    Each channel of the adapted student map and of the teacher map is a softmax over the h*w
    locations at temperature ``tau``; the loss is ``tau^2/(N*C) * sum KL(p_t || p_s)``.
    A 1x1 conv (no bias, as in CIRKD) maps the student's width to the teacher's when they differ.
    Defaults tau 4 and weight 50 are CIRKD's feature-CWD setting (``--lambda-cwd-fea 50``).

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
    ) -> None:
        super().__init__(student_channels, teacher_channels, num_classes)
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


__all__ = ["CWDFeatureLoss"]

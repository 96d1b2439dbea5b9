"""DIST: distillation from a stronger teacher by Pearson-correlation relations (Huang et al., NeurIPS 2022)."""

from __future__ import annotations

from typing import ClassVar

from torch import Tensor

from ladseg.errors import ConfigError
from ladseg.losses.base import IGNORE_INDEX, LOSSES, DistillLoss
from ladseg.losses.common import feature_pair, positive
from ladseg.models.segmentor import SegOutput


def pearson_rows(a: Tensor, b: Tensor, eps: float = 1e-8) -> Tensor:
    """Pearson correlation of each row of ``a`` with the same row of ``b`` (inputs R x D, output R)."""
    a = a - a.mean(dim=1, keepdim=True)
    b = b - b.mean(dim=1, keepdim=True)
    return (a * b).sum(dim=1) / (a.norm(dim=1) * b.norm(dim=1) + eps)


def dist_loss(
    s_logits: Tensor, t_logits: Tensor, tau: float = 1.0, beta: float = 1.0, gamma: float = 1.0
) -> Tensor:
    """``tau^2 * (beta * inter + gamma * intra)`` on N x K x h x w logits, every pixel an instance.

    inter-class: 1 - mean over pixels of the Pearson correlation, across the K classes, of the
    student's and teacher's softmax(z / tau); intra-class: 1 - mean over classes of the correlation
    across all N*h*w pixels of the batch (the official segmentation code's ``class_relation``).
    """
    k = s_logits.shape[1]
    ps = (s_logits / tau).softmax(dim=1).permute(0, 2, 3, 1).reshape(-1, k)
    pt = (t_logits / tau).softmax(dim=1).permute(0, 2, 3, 1).reshape(-1, k)
    inter = 1.0 - pearson_rows(ps, pt).mean()
    intra = 1.0 - pearson_rows(ps.t(), pt.t()).mean()
    return (tau**2) * (beta * inter + gamma * intra)


@LOSSES.register("dist")
class DISTLoss(DistillLoss):
    """DIST on the main logits (teacher resized to the student's size).

    Defaults follow the official segmentation code (``hunto/DIST_KD/segmentation``): beta = gamma = 1,
    tau = 1 (plain softmax), weight 1, and DIST on the auxiliary logits with ``aux_weight`` 0.4 (the
    ``distill`` method runs the frozen teacher's auxiliary head for it; 0 distils the main logits only).
    No labels are used, so ignore pixels are kept (as in the paper).
    """

    default_weight: ClassVar[float] = 1.0

    def __init__(
        self,
        student_channels: int,
        teacher_channels: int,
        num_classes: int,
        tau: float = 1.0,
        beta: float = 1.0,
        gamma: float = 1.0,
        aux_weight: float = 0.4,
        *,
        ignore_index: int = IGNORE_INDEX,
    ) -> None:
        super().__init__(student_channels, teacher_channels, num_classes, ignore_index=ignore_index)
        self.tau = positive("dist tau", tau)
        if beta < 0 or gamma < 0 or aux_weight < 0:
            raise ConfigError(
                f"dist beta, gamma and aux_weight must be >= 0, got beta={beta}, gamma={gamma}, aux_weight={aux_weight}"
            )
        self.beta = float(beta)
        self.gamma = float(gamma)
        self.aux_weight = float(aux_weight)
        self.uses_teacher_aux = self.aux_weight > 0

    def forward(self, student: SegOutput, teacher: SegOutput, mask: Tensor) -> Tensor:
        s, t = feature_pair(student.logits, teacher.logits)
        if s.shape[1] != t.shape[1]:
            raise ConfigError(
                f"dist needs the same classes in student and teacher, got {s.shape[1]} and {t.shape[1]}"
            )
        loss = dist_loss(s, t, self.tau, self.beta, self.gamma)
        if self.aux_weight and student.aux_logits is not None and teacher.aux_logits is not None:
            s_aux, t_aux = feature_pair(student.aux_logits, teacher.aux_logits)
            loss = loss + self.aux_weight * dist_loss(s_aux, t_aux, self.tau, self.beta, self.gamma)
        return loss


__all__ = ["DISTLoss", "dist_loss", "pearson_rows"]

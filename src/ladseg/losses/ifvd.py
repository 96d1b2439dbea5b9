"""IFVD: intra-class feature variation distillation (Wang et al., ECCV 2020)."""

from __future__ import annotations

from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor

from ladseg.losses.base import IGNORE_INDEX, LOSSES, DistillLoss
from ladseg.losses.common import feature_pair, labels_to
from ladseg.models.segmentor import SegOutput


def prototype_similarity(
    feat: Tensor, labels: Tensor, num_classes: int, ignore_index: int = IGNORE_INDEX
) -> Tensor:
    """Cosine similarity of each pixel to its class prototype (the mean feature of that class in its image).

    ``feat`` N x C x h x w, ``labels`` N x h x w. Returns N x h x w; ignore pixels get 0 (the caller masks them).
    """
    n, c = feat.shape[:2]
    flat = feat.flatten(2)  # N x C x P
    lab = labels.flatten(1)  # N x P
    valid = (lab != ignore_index) & (lab >= 0) & (lab < num_classes)
    onehot = F.one_hot(torch.where(valid, lab, 0), num_classes).to(flat.dtype) * valid[..., None]  # N x P x K
    sums = torch.einsum("ncp,npk->nkc", flat, onehot)
    protos = sums / onehot.sum(dim=1)[..., None].clamp_min(1e-6)  # N x K x C
    per_pixel = torch.einsum("npk,nkc->ncp", onehot, protos)  # each pixel's own class prototype
    return F.cosine_similarity(flat, per_pixel, dim=1, eps=1e-8).reshape(labels.shape)


@LOSSES.register("ifvd")
class IFVDLoss(DistillLoss):
    """MSE between the student's and the teacher's pixel-to-prototype cosine maps.

    Labels are down-sampled (nearest) to the student's feature grid, the teacher's features are
    resized to it; prototypes are per image and class. Ignore pixels contribute 0; the mean
    runs over all pixels by default, as CIRKD's ``CriterionIFV`` (``MSELoss`` over the whole map,
    where an ignore pixel is its own centre on both sides), or over labelled pixels only with
    ``exclude_ignore: true``.
    Widths may differ (each network is compared with its own prototypes). Default weight 200 is the
    official IFVD code's ``--lambda-ifv`` (beside pixel KD weight 10); CIRKD's benchmark uses 20 with KD weight 1.
    """

    default_weight: ClassVar[float] = 200.0

    def __init__(
        self,
        student_channels: int,
        teacher_channels: int,
        num_classes: int,
        exclude_ignore: bool = False,
        *,
        ignore_index: int = IGNORE_INDEX,
    ) -> None:
        super().__init__(student_channels, teacher_channels, num_classes, ignore_index=ignore_index)
        self.exclude_ignore = bool(exclude_ignore)

    def forward(self, student: SegOutput, teacher: SegOutput, mask: Tensor) -> Tensor:
        s, t = feature_pair(student.features, teacher.features)
        labels = labels_to(mask, s.shape[-2:])
        sim_s = prototype_similarity(s, labels, self.num_classes, self.ignore_index)
        sim_t = prototype_similarity(t, labels, self.num_classes, self.ignore_index)
        valid = ((labels != self.ignore_index) & (labels >= 0) & (labels < self.num_classes)).to(s.dtype)
        count = valid.sum().clamp_min(1.0) if self.exclude_ignore else valid.numel()
        return ((sim_s - sim_t).pow(2) * valid).sum() / count


__all__ = ["IFVDLoss", "prototype_similarity"]

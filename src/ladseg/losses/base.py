"""The contract of a distillation loss, plus the shared pieces every method needs.

A distillation loss compares a student's :class:`SegOutput` with a teacher's. Losses that own
parameters (feature adapters, projectors) are ``nn.Module`` children of the method, so they are
trained and saved with the method state but are not part of the exported student.
"""

from __future__ import annotations

from typing import Any, ClassVar

import torch.nn.functional as F
from torch import Tensor, nn

from ladseg.models.segmentor import SegOutput, resize_logits


class DistillLoss(nn.Module):
    """Base class of the entries of ``LOSSES``.

    ``forward(student, teacher, mask) -> scalar``: ``student``/``teacher`` are the two networks'
    :class:`SegOutput`; teacher tensors arrive detached (the caller runs it under ``no_grad``);
    ``mask`` is the N x H x W label (255 = ignore) at input resolution, for losses that use it.
    The method multiplies the result by the config's ``weight`` (``default_weight`` if unset).
    """

    default_weight: ClassVar[float] = 1.0
    #: does ``forward`` read the teacher's auxiliary logits? The ``distill`` method then computes them
    #: (a frozen teacher runs in eval mode, where a segmentor skips its auxiliary head).
    uses_teacher_aux: bool = False

    def __init__(self, student_channels: int, teacher_channels: int, num_classes: int, **params: Any) -> None:
        super().__init__()
        if params:
            raise TypeError(f"{type(self).__name__} got unknown parameter(s) {sorted(params)}")
        self.student_channels = student_channels
        self.teacher_channels = teacher_channels
        self.num_classes = num_classes

    def forward(self, student: SegOutput, teacher: SegOutput, mask: Tensor) -> Tensor:  # pragma: no cover
        raise NotImplementedError


def align_to(student: Tensor, teacher: Tensor) -> tuple[Tensor, Tensor]:
    """Resize ``teacher`` (logits or features) to the student's spatial size, bilinear, align_corners=True.

    Teacher and student may be different architectures (e.g. a PSPNet teacher for a DeepLabV3
    student, or an STDC student at 1/8 vs. a ResNet teacher); the student's resolution wins
    because its gradients are the ones that matter.
    """
    return student, resize_logits(teacher, student.shape[-2:])


def seg_ce(
    out: SegOutput, mask: Tensor, ignore_index: int = 255, aux_weight: float = 0.0
) -> tuple[Tensor, Tensor]:
    """Cross-entropy of the main logits and of the auxiliary logits (0 when absent), logits up-sampled to the mask.

    Returns ``(ce, aux_ce)`` unweighted; ``aux_weight`` only decides whether the aux term is
    computed at all (0 skips it), the caller applies the weight. The mean runs over labelled
    pixels; a batch with none (e.g. a crop of pure padding) gives 0 instead of NaN.
    """
    size = mask.shape[-2:]
    count = (mask != ignore_index).sum().clamp_min(1)

    def ce_of(logits: Tensor) -> Tensor:
        logits = resize_logits(logits, size)
        return F.cross_entropy(logits, mask, ignore_index=ignore_index, reduction="sum") / count

    ce = ce_of(out.logits)
    aux = ce_of(out.aux_logits) if aux_weight and out.aux_logits is not None else ce.new_zeros(())
    return ce, aux

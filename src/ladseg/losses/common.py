"""Pieces shared by the feature/relation distillation losses (no loss is registered here).

Every baseline compares the student's decoder features (or logits) with the teacher's after the
same three steps: resize the teacher to the student's grid (:func:`align_to`), cut any graph to
the teacher (defensive: the method already runs it under ``no_grad``), compute in float32 (the
softmaxes and similarity maps are unstable in half precision under autocast).
"""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor, nn

from ladseg.errors import ConfigError
from ladseg.losses.base import align_to


def feature_pair(student: Tensor, teacher: Tensor) -> tuple[Tensor, Tensor]:
    """(student, teacher) as float32 on the student's grid; the teacher is detached."""
    s, t = align_to(student, teacher.detach())
    return s.float(), t.float()


def softened_kl(s_logits: Tensor, t_logits: Tensor, tau: float, dim: int) -> Tensor:
    """``KL(softmax(t / tau) || softmax(s / tau))`` along ``dim`` (that dim summed away, no tau^2 factor).

    The one KL core of the logit and relation losses (pixel KD, CWD, CIRKD's rows); each loss
    chooses the axis of its distributions and how the KLs are averaged.
    """
    log_ps = F.log_softmax(s_logits / tau, dim=dim)
    log_pt = F.log_softmax(t_logits / tau, dim=dim)
    return (log_pt.exp() * (log_pt - log_ps)).sum(dim=dim)


def labels_to(mask: Tensor, size: tuple[int, int] | tuple[int, ...]) -> Tensor:
    """Labels resized to ``size`` by nearest neighbour (as IFVD and CIRKD down-sample them)."""
    if mask.dim() != 3:
        raise ConfigError(f"expected a N x H x W label mask, got shape {tuple(mask.shape)}")
    if tuple(mask.shape[-2:]) == tuple(size):
        return mask.long()
    return F.interpolate(mask[:, None].float(), size=tuple(size), mode="nearest")[:, 0].long()


def conv_adapter(in_channels: int, out_channels: int, bn: bool, wanted: bool | None) -> nn.Module:
    """A 1x1 conv (+BN) from the student's width to the teacher's.

    ``wanted``: True always adapts, False never (widths must match), None adapts only when the
    widths differ; with equal widths and no adapter the loss is zero when student == teacher.
    """
    if wanted is None:
        wanted = in_channels != out_channels
    if not wanted:
        if in_channels != out_channels:
            raise ConfigError(
                f"student width {in_channels} != teacher width {out_channels}: an adapter is needed "
                "(set the adapter/projector option to null or true)"
            )
        return nn.Identity()
    layers: list[nn.Module] = [nn.Conv2d(in_channels, out_channels, 1, bias=False)]
    if bn:
        layers.append(nn.BatchNorm2d(out_channels))
    return nn.Sequential(*layers)


def positive(name: str, value: float) -> float:
    """A strictly positive float parameter, or a ConfigError naming it."""
    if not value > 0:
        raise ConfigError(f"{name} must be > 0, got {value}")
    return float(value)

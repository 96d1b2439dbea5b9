"""Segmentation and distillation losses (registry ``LOSSES``, beside its base class in ``base.py``).

``build_loss(name, student_channels, teacher_channels, num_classes, ignore_index, **params)``
builds one; the ``distill`` method reads a list ``kd_losses: [{name: cwd, weight: 3.0, tau: 4.0}, ...]``.
Each loss lives in the file named for it, imported explicitly below (adding a loss is adding a file
and a line here).
"""

from __future__ import annotations

from ladseg.losses import (  # noqa: F401  (registration)
    adversarial,
    af_dcd,
    at,
    cirkd,
    cwd,
    dist,
    fitnets,
    ifvd,
    kd,
    maskd,
    mse,
    skd,
)
from ladseg.losses.base import IGNORE_INDEX, LOSSES, DistillLoss, LossParams, align_to, build_loss, seg_ce

__all__ = ["IGNORE_INDEX", "LOSSES", "DistillLoss", "LossParams", "align_to", "build_loss", "seg_ce"]

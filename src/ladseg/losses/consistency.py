"""The LAD teacher's dual-path consistency D(s -> t), by config name (``method.consistency``).

``t`` should already be detached; the functions are the logit losses' own (one formula each).
"""

from __future__ import annotations

from collections.abc import Callable

from torch import Tensor

from ladseg.losses.cwd import cwd_loss
from ladseg.losses.kd import pixel_kl_loss
from ladseg.losses.mse import logit_mse_loss

CONSISTENCY: dict[str, Callable[[Tensor, Tensor, float], Tensor]] = {
    "cwd": cwd_loss,
    "kl": lambda s, t, tau: pixel_kl_loss(s, t, tau),
    "mse": lambda s, t, tau: logit_mse_loss(s, t),
}

__all__ = ["CONSISTENCY"]

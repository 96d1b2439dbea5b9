"""Distillation losses (registry). Each entry is a :class:`DistillLoss` subclass.

``build_loss(name, student_channels, teacher_channels, num_classes, **params)`` builds one; the
``distill`` method reads a list ``kd_losses: [{name: cwd, weight: 3.0, tau: 4.0}, ...]``.
Modules named ``losses/kd_*.py`` are imported automatically, so adding a loss is adding a file.
"""

from __future__ import annotations

import importlib
import inspect
import pkgutil
from typing import Any

from ladseg.errors import ConfigError
from ladseg.losses.base import DistillLoss, align_to, seg_ce
from ladseg.registry import Registry

LOSSES: Registry[DistillLoss] = Registry("loss")


def _accepted(cls: type[DistillLoss]) -> set[str] | None:
    """Keyword parameters a loss class accepts besides the channel/class counts (None: it takes ``**params``)."""
    if cls.__init__ is DistillLoss.__init__:
        return set()
    params = inspect.signature(cls.__init__).parameters.values()
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params):
        return None
    return {p.name for p in params} - {"self", "student_channels", "teacher_channels", "num_classes"}


def build_loss(
    name: str, student_channels: int, teacher_channels: int, num_classes: int, **params: Any
) -> DistillLoss:
    """Build a registered distillation loss; an unknown name or parameter is a :class:`ConfigError`."""
    try:
        cls = LOSSES.get(name)
    except KeyError as exc:
        raise ConfigError(str(exc.args[0])) from None
    accepted = _accepted(cls) if inspect.isclass(cls) else None
    if accepted is not None:
        unknown = sorted(set(params) - accepted)
        if unknown:
            raise ConfigError(f"unknown parameter(s) {unknown} for loss {name!r}; valid: {sorted(accepted)}")
    return cls(student_channels, teacher_channels, num_classes, **params)


def _import_losses() -> None:
    from ladseg.losses import distill  # noqa: F401  (cwd, kd, mse)

    for info in pkgutil.iter_modules(__path__):
        if info.name.startswith("kd_"):
            importlib.import_module(f"{__name__}.{info.name}")


_import_losses()

__all__ = ["LOSSES", "DistillLoss", "align_to", "build_loss", "seg_ce"]

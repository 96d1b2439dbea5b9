"""Training methods (task modules): supervised, LAD teacher, distillation, KD baselines.

``build_method(name, params, student, num_classes, ignore_index, teacher)`` is what the engine
calls; each method module registers itself in ``METHODS`` when imported below.
"""

from __future__ import annotations

from typing import Any

from ladseg.errors import ConfigError
from ladseg.methods.base import Batch, Method, MethodParams
from ladseg.models.segmentor import Segmentor
from ladseg.registry import Registry

METHODS: Registry[type[Method]] = Registry("method")


def build_method(
    name: str,
    params: dict[str, Any] | None,
    student: Segmentor,
    num_classes: int,
    ignore_index: int = 255,
    teacher: Segmentor | None = None,
    normalize: str | None = None,
) -> Method:
    """Build a registered method; bad names, parameters or teacher/student pairs are :class:`ConfigError`.

    ``params`` is the config's ``method:`` mapping (``name`` is ignored). A method with
    ``needs_teacher`` requires ``teacher`` (frozen and attached here, outside the module tree).
    ``normalize`` names the batches' normalisation (``data.normalize``): a teacher whose checkpoint
    declares another input gets the batch converted, and ``auto`` label scales follow it.
    """
    try:
        cls = METHODS.get(name)
    except KeyError as exc:
        raise ConfigError(str(exc.args[0])) from None
    try:
        parsed = cls.parse_params(params)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"method {name!r}: {exc}") from exc
    if student.num_classes != num_classes:
        raise ConfigError(
            f"the model predicts {student.num_classes} classes but the dataset has {num_classes}"
        )
    if cls.needs_teacher:
        if teacher is None:
            raise ConfigError(
                f"method {name!r} needs a teacher: set teacher.config (or teacher.model) and teacher.checkpoint"
            )
        if teacher.num_classes != student.num_classes:
            raise ConfigError(
                f"teacher and student disagree on the classes: teacher {teacher.num_classes}, student {student.num_classes}"
            )
    method = cls(student, parsed, num_classes, ignore_index)
    if normalize is not None:
        method.set_data_normalization(normalize)
    if cls.needs_teacher and teacher is not None:
        method.set_teacher(teacher)
    return method


# Importing the method modules fills the registry.
from ladseg.methods import distill, lad_teacher, supervised  # noqa: E402,F401

__all__ = ["METHODS", "Batch", "Method", "MethodParams", "build_method"]

"""Training methods (task modules): supervised, LAD teacher, distillation, KD baselines.

``build_method(name, params, network, num_classes, ignore_index, teacher, data_normalization)`` is what the
engine calls. The registry ``METHODS`` lives beside the base class (``base.py``); each method module
registers itself there and is imported explicitly below.
"""

from __future__ import annotations

from typing import Any

from ladseg.errors import ConfigError
from ladseg.losses.base import IGNORE_INDEX
from ladseg.methods import distill, lad_teacher, maskd_tokens, supervised  # noqa: F401  (registration)
from ladseg.methods.base import METHODS, Batch, InputNormalization, Method, MethodParams
from ladseg.models.segmentor import Segmentor


def build_method(
    name: str,
    params: dict[str, Any] | MethodParams | None,
    network: Segmentor,
    num_classes: int,
    ignore_index: int = IGNORE_INDEX,
    teacher: Segmentor | None = None,
    data_normalization: InputNormalization | None = None,
) -> Method:
    """Build a registered method; bad names, parameters or teacher/student pairs are :class:`ConfigError`.

    ``params`` is the config's ``method:`` section, typed or a mapping (``name`` is ignored). A method
    with ``needs_teacher`` requires ``teacher`` (frozen and attached here, outside the module tree).
    ``data_normalization`` says how the batches are normalised (the engine's
    :func:`~ladseg.engine.inputs.input_normalization`): a teacher whose checkpoint declares another
    input gets the batch converted, and label scales given by name (``auto``, ``imagenet``) follow it.
    """
    try:
        cls = METHODS.get(name)
    except KeyError as exc:
        raise ConfigError(str(exc.args[0])) from None
    parsed = cls.parse_params(params)
    if network.num_classes != num_classes:
        raise ConfigError(
            f"the model predicts {network.num_classes} classes but the dataset has {num_classes}"
        )
    if cls.needs_teacher:
        if teacher is None:
            raise ConfigError(
                f"method {name!r} needs a teacher: set teacher.config (or teacher.model) and teacher.checkpoint"
            )
        if teacher.num_classes != network.num_classes:
            raise ConfigError(
                f"teacher and student disagree on the classes: teacher {teacher.num_classes}, student {network.num_classes}"
            )
    method = cls(network, parsed, num_classes, ignore_index)
    if data_normalization is not None:
        method.set_data_normalization(data_normalization)
    if cls.needs_teacher and teacher is not None:
        method.set_teacher(teacher)
    return method


__all__ = ["METHODS", "Batch", "InputNormalization", "Method", "MethodParams", "build_method"]

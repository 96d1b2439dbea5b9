"""The contract of a distillation loss, its registry, and the shared pieces every method needs.

A distillation loss compares a student's :class:`SegOutput` with a teacher's. It is built as
``cls(student_channels, teacher_channels, num_classes, *, ignore_index, **params)``: the first four
come from the method (the label's ignore index is the dataset's, never a loss option), ``params``
from the config. Its config parameters are exactly its constructor's keyword parameters;
:meth:`DistillLoss.params_class` turns them into the typed section that the config validator checks
(``method.kd_losses[i]``), so a loss declares its options once, in its signature.
Losses that own parameters (feature adapters, projectors) are ``nn.Module`` children of the method,
so they are trained and saved with the method state but are not part of the exported student.
"""

from __future__ import annotations

import dataclasses
import inspect
from dataclasses import dataclass
from typing import Any, ClassVar, get_type_hints

import torch.nn.functional as F
from torch import Tensor, nn

from ladseg.errors import ConfigError
from ladseg.labels import IGNORE_INDEX
from ladseg.models.segmentor import SegOutput, resize_logits
from ladseg.registry import Registry
from ladseg.schema import from_mapping

#: the label value of "no label" when the caller does not say (the datasets' convention)
#: constructor parameters every loss gets from the method, not from the config
_CONTRACT = ("self", "student_channels", "teacher_channels", "num_classes", "ignore_index")


@dataclass
class LossParams:
    """One entry of ``method.kd_losses``: the loss ``name`` (the tag), its ``weight`` and its options.

    ``weight: null`` takes the loss's ``default_weight``. Each registered loss has a subclass with
    its own options (:meth:`DistillLoss.params_class`), chosen by ``name`` when the config is read.
    """

    name: str
    weight: float | None = None

    config_tag: ClassVar[str] = "name"

    @classmethod
    def config_variant(cls, raw: dict[str, Any], key: str) -> type:
        """The typed section of the loss ``raw["name"]`` names (an unknown name is a ConfigError)."""
        if cls is not LossParams:  # a loss's own section: already chosen
            return cls
        name = raw.get("name")
        if not isinstance(name, str) or name not in LOSSES:
            raise ConfigError(
                f"config key '{key}.name': expected one of {', '.join(LOSSES.names())}, got {name!r}"
            )
        return LOSSES.get(name).params_class()

    def check_config(self, key: str) -> None:
        """Check the options where the config is read (:meth:`DistillLoss.check_options`), so that
        ``--dry-run`` refuses what building the loss would refuse (``tau: 0``, an unknown choice)."""
        if type(self) is LossParams:
            return
        try:
            LOSSES.get(self.name).check_options(**self.options())
        except (ConfigError, ValueError, TypeError) as exc:
            raise ConfigError(f"config key {key!r} ({self.name}): {exc}") from None

    def options(self) -> dict[str, Any]:
        """The loss's own keyword arguments (everything but ``name`` and ``weight``)."""
        return {
            f.name: getattr(self, f.name)
            for f in dataclasses.fields(self)
            if f.name not in ("name", "weight")
        }


class DistillLoss(nn.Module):
    """Base class of the entries of ``LOSSES``.

    ``forward(student, teacher, mask) -> scalar``: ``student``/``teacher`` are the two networks'
    :class:`SegOutput`; teacher tensors arrive detached (the caller runs it under ``no_grad``);
    ``mask`` is the N x H x W label (``ignore_index`` = no label) at input resolution, for losses
    that use it. The method multiplies the result by the config's ``weight`` (``default_weight`` if unset).
    """

    default_weight: ClassVar[float] = 1.0
    #: does ``forward`` read the teacher's auxiliary logits? The ``distill`` method then computes them
    #: (a frozen teacher runs in eval mode, where a segmentor skips its auxiliary head).
    uses_teacher_aux: bool = False
    #: which features ``student_channels``/``teacher_channels`` count and ``forward`` reads: ``decoder``
    #: (``SegOutput.features``) or ``backbone`` (the last backbone stage, ``extras[BACKBONE_KEY]``; the
    #: ``distill`` method then asks both networks for it)
    feature_level: ClassVar[str] = "decoder"

    def __init__(
        self,
        student_channels: int,
        teacher_channels: int,
        num_classes: int,
        *,
        ignore_index: int = IGNORE_INDEX,
    ) -> None:
        super().__init__()
        self.student_channels = student_channels
        self.teacher_channels = teacher_channels
        self.num_classes = num_classes
        self.ignore_index = int(ignore_index)

    @classmethod
    def check_options(cls, **options: Any) -> None:
        """Refuse bad option values before any model exists (called where the config is read).

        The default builds the loss once at stand-in widths (256: divisible by every group count a
        loss uses); the real widths are checked when the method builds it. A loss that reads a file
        when built (its ``null`` default filled in later, as ``teacher.checkpoint``) overrides this.
        """
        cls(256, 256, 2, **options)

    def forward(self, student: SegOutput, teacher: SegOutput, mask: Tensor) -> Tensor:  # pragma: no cover
        raise NotImplementedError

    @classmethod
    def params_class(cls) -> type[LossParams]:
        """The typed config section of this loss: ``name``, ``weight`` and its constructor's options."""
        cached = cls.__dict__.get("_params_class")
        if cached is not None:
            return cached
        hints = get_type_hints(cls.__init__)
        options = [
            (p.name, hints[p.name], dataclasses.field(default=p.default))
            for p in inspect.signature(cls.__init__).parameters.values()
            if p.name not in _CONTRACT and p.kind is not inspect.Parameter.VAR_KEYWORD
        ]
        made = dataclasses.make_dataclass(f"{cls.__name__}Params", options, bases=(LossParams,))
        made.__module__ = cls.__module__
        cls._params_class = made
        return made


LOSSES: Registry[type[DistillLoss]] = Registry("loss")


class SeparatelyOptimized:
    """A part that steps its own parameters with its own optimiser (the adversarial loss's discriminator).

    The method finds such parts by this type: the engine's optimiser leaves
    :meth:`separately_optimized_parameters` out, calls :meth:`after_optimizer_step` once after each of
    its steps, and saves :meth:`optimizer_state_dict` with the resume state.
    """

    def separately_optimized_parameters(self) -> list[nn.Parameter]:
        raise NotImplementedError

    def after_optimizer_step(self) -> dict[str, Tensor]:
        """The part's own step; returns the terms to log."""
        raise NotImplementedError

    def optimizer_state_dict(self) -> dict[str, Any]:
        raise NotImplementedError

    def load_optimizer_state_dict(self, state: dict[str, Any]) -> None:
        raise NotImplementedError


def build_loss(
    name: str,
    student_channels: int,
    teacher_channels: int,
    num_classes: int,
    ignore_index: int = IGNORE_INDEX,
    **params: Any,
) -> DistillLoss:
    """Build a registered distillation loss; options are checked by the config validator, so an
    unknown name, an unknown option or a wrong type is a :class:`ConfigError` naming it."""
    try:
        cls = LOSSES.get(name)
    except KeyError as exc:
        raise ConfigError(str(exc.args[0])) from None
    spec = from_mapping(cls.params_class(), {"name": name, **params}, f"loss {name}")
    return cls(student_channels, teacher_channels, num_classes, ignore_index=ignore_index, **spec.options())


def align_to(student: Tensor, teacher: Tensor) -> tuple[Tensor, Tensor]:
    """Resize ``teacher`` (logits or features) to the student's spatial size, bilinear, align_corners=True.

    Teacher and student may be different architectures (e.g. a PSPNet teacher for a DeepLabV3
    student, or an STDC student at 1/8 vs. a ResNet teacher); the student's resolution wins
    because its gradients are the ones that matter.
    """
    return student, resize_logits(teacher, student.shape[-2:])


def seg_ce(
    out: SegOutput, mask: Tensor, ignore_index: int = IGNORE_INDEX, aux_weight: float = 0.0
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

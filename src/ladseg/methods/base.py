"""The contract between a training method and the one engine that drives them all.

A method owns its losses. The engine owns data, optimiser, schedule, autocast, DDP,
logging, validation and checkpoints. ``Method`` is an ``nn.Module`` whose forward takes a
batch and returns named loss terms, so the engine can wrap the whole method in
DistributedDataParallel. A frozen teacher is held *outside* the module tree
(see :meth:`Method.set_teacher`) so it never enters DDP, the optimiser or the checkpoint.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, ClassVar, Generic, TypeVar

from torch import Tensor, nn

from ladseg.errors import ConfigError
from ladseg.labels import IGNORE_INDEX
from ladseg.losses.base import SeparatelyOptimized
from ladseg.models.segmentor import Segmentor
from ladseg.registry import Registry
from ladseg.schema import from_mapping

Batch = dict[str, Tensor]  # "image": N x 3 x H x W float, "mask": N x H x W long (ignore_index = no label)


@dataclass
class MethodParams:
    """Base of each method's typed parameters (the ``method:`` section of a config).

    ``name`` is the tag of the section: it picks the registered method whose ``Params`` subclass
    checks the other keys when the config is read (:func:`ladseg.schema.from_mapping`).
    """

    name: str = "supervised"
    aux_weight: float = 0.4

    config_tag: ClassVar[str] = "name"

    @classmethod
    def config_variant(cls, raw: dict[str, Any], key: str) -> type:
        """The ``Params`` of the method ``raw["name"]`` names (default ``supervised``)."""
        if cls is not MethodParams:  # a method's own Params: already chosen
            return cls
        name = raw.get("name", "supervised")
        if not isinstance(name, str):
            raise ConfigError(f"config key '{key}.name': expected a method name, got {name!r}")
        try:
            return METHODS.get(name).Params
        except KeyError as exc:
            raise ConfigError(f"config key '{key}.name': {exc.args[0]}") from None


@dataclass(frozen=True)
class InputNormalization:
    """How the batches are normalised, as the engine tells a method (methods do not import the data package).

    name: ``data.normalize``. label_scales: the LAD label scale of every normalisation name (what
    ``scale: auto`` or ``scale: imagenet`` of a label encoding means). convert: ``convert(x, source,
    target)`` re-normalises a batch, for a teacher whose checkpoint reads another input.
    """

    name: str
    label_scales: Mapping[str, float]
    convert: Callable[[Tensor, str, str], Tensor] | None = None


P = TypeVar("P", bound=MethodParams)


class Method(nn.Module, Generic[P]):
    """Base class. Subclasses set ``Params`` and implement :meth:`forward`.

    Registered modules (``network`` and any loss modules) are trained and saved;
    ``forward(batch)`` returns ``{"loss": total, <term>: value, ...}``.
    """

    Params: ClassVar[type[MethodParams]] = MethodParams
    #: does this method need a frozen teacher (``teacher:`` section of the config)?
    needs_teacher: ClassVar[bool] = False

    def __init__(
        self, network: Segmentor, params: P, num_classes: int, ignore_index: int = IGNORE_INDEX
    ) -> None:
        super().__init__()
        #: the config's ``model:`` network, not always a student: a LAD teacher under ``lad_teacher``
        #: (its name is the state-dict prefix; earlier checkpoints say ``student.``: see migrate_resume_state)
        self.network = network
        self.params = params
        self.num_classes = num_classes
        self.ignore_index = ignore_index
        self._teacher: list[Segmentor] = []  # a list hides it from nn.Module registration
        #: how the batches are normalised (``data.normalize``); None when the caller did not say
        self.normalization: InputNormalization | None = None

    @property
    def data_normalize(self) -> str | None:
        """The name of the batches' normalisation (None when the caller did not say)."""
        return self.normalization.name if self.normalization is not None else None

    @property
    def label_scales(self) -> Mapping[str, float] | None:
        return self.normalization.label_scales if self.normalization is not None else None

    def set_data_normalization(self, normalization: InputNormalization | None) -> None:
        """Say how the batch images are normalised, so inputs of other normalisations (a teacher's,
        a label channel's scale) can be derived from it. Called before :meth:`set_teacher`."""
        self.normalization = normalization

    # -- teacher -----------------------------------------------------------------------
    def set_teacher(self, teacher: Segmentor) -> None:
        """Attach a frozen teacher in eval mode: no grads, not a submodule."""
        teacher.eval()
        for p in teacher.parameters():
            p.requires_grad_(False)
        self._teacher[:] = [teacher]

    @property
    def teacher(self) -> Segmentor | None:
        return self._teacher[0] if self._teacher else None

    def train(self, mode: bool = True) -> Method:
        super().train(mode)
        if self.teacher is not None:
            self.teacher.eval()  # the teacher stays in eval mode whatever the engine does
        return self

    # -- training ----------------------------------------------------------------------
    def forward(self, batch: Batch) -> dict[str, Tensor]:  # pragma: no cover - abstract
        raise NotImplementedError

    # -- parts with their own optimiser (e.g. the adversarial loss's discriminator) -----------
    def _separately_optimized(self) -> list[tuple[str, SeparatelyOptimized]]:
        """The submodules declared :class:`SeparatelyOptimized`, by attribute path."""
        return [(name, m) for name, m in self.named_modules() if isinstance(m, SeparatelyOptimized)]

    def separately_optimized_parameters(self) -> list[nn.Parameter]:
        """Parameters the engine's optimiser must leave out (their module steps them itself)."""
        return [p for _, m in self._separately_optimized() for p in m.separately_optimized_parameters()]

    def term_name(self, module_name: str) -> str:
        """The log name of a submodule's terms (its attribute path; ``distill`` uses the loss's term name)."""
        return module_name.replace(".", "_")

    def after_optimizer_step(self) -> dict[str, Tensor]:
        """Called by the engine once after each optimiser step: the separate steps, their logged terms."""
        terms: dict[str, Tensor] = {}
        for name, m in self._separately_optimized():
            for key, value in m.after_optimizer_step().items():
                terms[f"{self.term_name(name)}_{key}"] = value
        return terms

    def separate_optimizer_state(self) -> dict[str, Any]:
        """The state of the parts' own optimisers (saved with the resume state), by module name."""
        return {name: m.optimizer_state_dict() for name, m in self._separately_optimized()}

    def load_separate_optimizer_state(self, state: Mapping[str, Any]) -> list[str]:
        """Restore :meth:`separate_optimizer_state`; returns the names that had no saved state."""
        missing = []
        for name, m in self._separately_optimized():
            if name in state:
                m.load_optimizer_state_dict(state[name])
            else:
                missing.append(name)
        return missing

    # -- evaluation --------------------------------------------------------------------
    #: does the evaluated network read label channels beside the image (a LAD teacher)? Such a method
    #: also implements :meth:`inference_input_without_label`, and validation logs the label-use gap.
    label_input: ClassVar[bool] = False

    def inference_input(self, batch: Batch) -> Tensor:
        """What the evaluated network reads for this batch (the image; LAD adds a label channel)."""
        return batch["image"]

    def inference_input_without_label(self, batch: Batch) -> Tensor:
        """The input with its label channels blanked (only for methods with ``label_input``)."""
        raise ConfigError(f"method {type(self).__name__} reads no label channels")

    def eval_model(self) -> Segmentor:
        """The network that validation runs (``network`` unless a method says otherwise)."""
        return self.network

    def export_model(self) -> Segmentor:
        """The network users deploy (saved as the run's model)."""
        return self.network

    @classmethod
    def parse_params(cls, raw: dict[str, Any] | MethodParams | None) -> MethodParams:
        """Typed parameters from a ``method:`` mapping (or typed ones, checked again), by the config's
        one validator: an unknown key or a wrong type is a ConfigError naming ``method.<key>``."""
        if isinstance(raw, MethodParams):
            raw = dataclasses.asdict(raw)
        raw = {k: v for k, v in (raw or {}).items() if k != "name"}
        return from_mapping(cls.Params, raw, "method")


METHODS: Registry[type[Method]] = Registry("method")

"""The contract between a training method and the one engine that drives them all.

A method owns its losses. The engine owns data, optimiser, schedule, autocast, DDP,
logging, validation and checkpoints. ``Method`` is an ``nn.Module`` whose forward takes a
batch and returns named loss terms, so the engine can wrap the whole method in
DistributedDataParallel. A frozen teacher is held *outside* the module tree
(see :meth:`Method.set_teacher`) so it never enters DDP, the optimiser or the checkpoint.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any, ClassVar

import torch
from torch import Tensor, nn

from ladseg.models.segmentor import Segmentor

Batch = dict[str, Tensor]  # "image": N x 3 x H x W float, "mask": N x H x W long (255 = ignore)


@dataclass
class MethodParams:
    """Base of each method's typed parameters (the ``method:`` section of a config)."""

    aux_weight: float = 0.4


class Method(nn.Module):
    """Base class. Subclasses set ``Params`` and implement :meth:`forward`.

    Registered modules (``student`` and any ``adapters``) are trained and saved;
    ``forward(batch)`` returns ``{"loss": total, <term>: value, ...}``.
    """

    Params: ClassVar[type[MethodParams]] = MethodParams
    #: does this method need a frozen teacher (``teacher:`` section of the config)?
    needs_teacher: ClassVar[bool] = False

    def __init__(
        self, student: Segmentor, params: MethodParams, num_classes: int, ignore_index: int = 255
    ) -> None:
        super().__init__()
        self.student = student
        self.params = params
        self.num_classes = num_classes
        self.ignore_index = ignore_index
        self._teacher: list[Segmentor] = []  # a list hides it from nn.Module registration
        #: the normalisation of the batches (``data.normalize``); None when the caller did not say
        self.data_normalize: str | None = None

    def set_data_normalization(self, name: str | None) -> None:
        """Say how the batch images are normalised, so inputs of other normalisations (a teacher's,
        a label channel's scale) can be derived from it. Called before :meth:`set_teacher`."""
        self.data_normalize = name

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

    # -- evaluation --------------------------------------------------------------------
    def inference_input(self, batch: Batch) -> Tensor:
        """What the evaluated network reads for this batch (the image; LAD adds a label channel)."""
        return batch["image"]

    def eval_model(self) -> Segmentor:
        """The network that validation runs (the student for most methods)."""
        return self.student

    def export_model(self) -> Segmentor:
        """The network users deploy (saved as the run's model)."""
        return self.student

    @classmethod
    def parse_params(cls, raw: dict[str, Any] | None) -> MethodParams:
        """Typed parameters from a config dict; an unknown key is an error naming the valid ones."""
        raw = dict(raw or {})
        raw.pop("name", None)
        valid = {f.name for f in fields(cls.Params)}
        unknown = sorted(set(raw) - valid)
        if unknown:
            raise ValueError(
                f"unknown key(s) {unknown} in method section for {cls.__name__}; valid: {sorted(valid)}"
            )
        return cls.Params(**raw)


def zero_like_loss(ref: Tensor) -> Tensor:
    """A zero that keeps device/dtype (for absent optional terms)."""
    return torch.zeros((), device=ref.device, dtype=ref.dtype)

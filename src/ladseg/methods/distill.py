"""Distillation from a frozen teacher into an image-only student (method ``distill``).

LAD stage 2 (Qiu et al., arXiv 2407.13254) when the teacher reads a label channel
(``teacher.in_channels > 3``): the teacher sees ``[x, enc_fixed(y)]`` (fixed codes, noise 0.02);
the student sees ``x`` alone::

    with no_grad: t = T([x, enc_fixed(y)])          # teacher in eval mode
    s = S(x)
    loss = CE(s) + aux_weight * auxCE(s) + sum_i w_i * L_i(s, t, y)

The reference student recipe is CE + 0.02 x aux CE + 3 x CWD (tau 4) on logits. A teacher with
``in_channels == 3`` is an ordinary teacher (e.g. a CIRKD-style ResNet-101), so classic KD baselines
run through the same method and engine. Losses with parameters (adapters) are submodules: trained
and saved with the method state, never part of the exported student.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor, nn

from ladseg.errors import ConfigError
from ladseg.losses.base import IGNORE_INDEX, LOSSES, DistillLoss, LossParams, seg_ce
from ladseg.methods.base import METHODS, Batch, Method, MethodParams
from ladseg.methods.label_encoding import (
    LabelEncoder,
    TeacherLabelParams,
    reconcile_encoding,
    resolve_scale,
)
from ladseg.methods.lad_teacher import check_label_input
from ladseg.models.segmentor import BACKBONE_KEY, Segmentor, SegOutput
from ladseg.notes import note
from ladseg.process_group import is_main_process


def _default_kd_losses() -> list[LossParams]:
    return [LOSSES.get("cwd").params_class()(name="cwd", weight=3.0, tau=4.0)]


@dataclass
class DistillParams(MethodParams):
    """The ``method:`` section of a distillation config.

    aux_weight: student auxiliary-head weight (0.02 in the LAD reference's student run).
    kd_losses: list of ``{name, weight, **loss params}``, each typed by its loss (``LossParams``);
        weight null takes the loss's ``default_weight``.
    teacher_label: label encoding of a label-assisted teacher (``TeacherLabelParams``: fixed codes,
        ``noise`` 0.02; ``kind`` and ``scale`` must match how the teacher was trained; ``scale: auto``,
        the default, takes it from the teacher's checkpoint).
    """

    name: str = "distill"
    aux_weight: float = 0.02
    kd_losses: list[LossParams] = field(default_factory=_default_kd_losses)
    teacher_label: TeacherLabelParams = field(default_factory=TeacherLabelParams)


@torch.no_grad()
def feature_channels(model: Segmentor) -> dict[str, int]:
    """Channels of the features a loss can read, by ``DistillLoss.feature_level`` (``decoder``:
    ``SegOutput.features``; ``backbone``: the last backbone stage), found by one tiny eval-mode forward."""
    was_training = model.training
    ref = next(model.parameters())
    model.eval()
    try:
        x = torch.zeros(1, model.in_channels, 64, 64, device=ref.device, dtype=ref.dtype)
        out = model(x, keep_backbone=True)
    finally:
        model.train(was_training)
    return {"decoder": int(out.features.shape[1]), "backbone": int(out.extras[BACKBONE_KEY].shape[1])}


@METHODS.register("distill")
class Distill(Method[DistillParams]):
    """Student <- frozen teacher with a configurable list of distillation losses."""

    Params = DistillParams
    needs_teacher = True

    def __init__(
        self, network: Segmentor, params: DistillParams, num_classes: int, ignore_index: int = IGNORE_INDEX
    ) -> None:
        super().__init__(network, params, num_classes, ignore_index)
        if network.in_channels != 3:
            raise ConfigError(
                f"the distillation student must read 3 image channels, got in_channels={network.in_channels}"
            )
        self.teacher_encoder = LabelEncoder(params.teacher_label, num_classes, ignore_index)
        #: the normalisation the teacher reads when it differs from the batches' (None: the batch as is)
        self.teacher_normalize: str | None = None
        #: the losses built from ``params.kd_losses`` (their specs), in order; trained and saved with the method
        self.loss_modules = nn.ModuleList()
        self.kd_weights: list[float] = []
        self.kd_names: list[str] = []

    def set_teacher(self, teacher: Segmentor) -> None:
        """Attach the frozen teacher, check it fits, and build the losses (adapters need its widths)."""
        if teacher.num_classes != self.num_classes:
            raise ConfigError(
                f"teacher predicts {teacher.num_classes} classes, the student {self.num_classes}"
            )
        meta = getattr(teacher, "meta", None) or {}
        declared = meta.get("normalize")
        self.teacher_normalize = None
        if declared and self.data_normalize and declared != self.data_normalize:
            scales = self.label_scales or {}
            if declared not in scales:  # an unknown name is a ConfigError, not a silent pass-through
                raise ConfigError(f"unknown normalization {declared!r}; valid: {', '.join(scales)}")
            self.teacher_normalize = declared
            if is_main_process():
                note(
                    f"note: the teacher reads {declared!r} input (its checkpoint), the batches are "
                    f"{self.data_normalize!r}: converting them for the teacher each step"
                )
        if teacher.in_channels > 3:
            self.teacher_encoder = self._teacher_label_encoder(meta)
            check_label_input(teacher, self.teacher_encoder, "the label-assisted teacher")
        super().set_teacher(teacher)
        if len(self.loss_modules) == 0:
            self._build_losses(feature_channels(self.network), feature_channels(teacher))

    def _teacher_label_encoder(self, meta: dict[str, Any]) -> LabelEncoder:
        """The teacher's label channel: what its checkpoint declares (:func:`reconcile_encoding`), else the
        configured encoding at the label scale of the teacher's input normalisation (``scale: auto``)."""
        teacher_norm = self.teacher_normalize or meta.get("normalize") or self.data_normalize
        enc, message = reconcile_encoding(
            self.teacher_encoder.params, meta, teacher_norm, self.label_scales, "method.teacher_label"
        )
        if message and is_main_process():
            note(message)
        scale = resolve_scale(enc.scale, teacher_norm, self.label_scales)
        return LabelEncoder(enc, self.num_classes, self.ignore_index, scale)

    def _build_losses(self, student_channels: dict[str, int], teacher_channels: dict[str, int]) -> None:
        """Each loss gets the widths of the features it reads (its ``feature_level``)."""
        p = self.params
        for i, spec in enumerate(p.kd_losses):
            cls = LOSSES.get(spec.name)
            level = cls.feature_level
            try:
                loss: DistillLoss = cls(
                    student_channels[level], teacher_channels[level], self.num_classes,
                    ignore_index=self.ignore_index, **spec.options(),
                )  # fmt: skip
            except (ConfigError, ValueError) as exc:  # a value out of range, or widths that cannot meet
                raise ConfigError(f"method.kd_losses[{i}] ({spec.name}): {exc}") from exc
            ref = next(self.network.parameters())
            self.loss_modules.append(loss.to(ref.device))
            self.kd_weights.append(float(spec.weight if spec.weight is not None else loss.default_weight))
            name = f"kd_{spec.name}"
            self.kd_names.append(name if name not in self.kd_names else f"{name}_{i}")

    def term_name(self, module_name: str) -> str:
        """``loss_modules.<i>`` -> that loss's term name (``kd_adversarial``)."""
        head, _, index = module_name.partition(".")
        if head == "loss_modules" and index.isdigit():
            return self.kd_names[int(index)]
        return super().term_name(module_name)

    def _keep_backbone(self) -> bool:
        """Does a loss read the backbone's last stage (then both networks return it)?"""
        return any(fn.feature_level == "backbone" for fn in self.loss_modules)

    def _run_teacher(self, teacher: Segmentor, x: Tensor) -> SegOutput:
        """The teacher's output; with its auxiliary logits when a loss reads them (eval mode skips them)."""
        keep = self._keep_backbone()
        if teacher.aux_head is None or not any(fn.uses_teacher_aux for fn in self.loss_modules):
            return teacher(x, keep_backbone=keep)
        feats = teacher.backbone_features(x)
        out: SegOutput = teacher.decode_head(feats)
        if out.aux_logits is None:
            out.aux_logits = teacher.aux_head(feats[teacher.aux_index])
        if keep:
            out.extras[BACKBONE_KEY] = feats[-1]
        return out

    def teacher_input(self, batch: Batch) -> Tensor:
        """What the teacher reads: the image, plus the fixed-code label channel for a LAD teacher."""
        x = batch["image"]
        if self.teacher_normalize is not None and self.data_normalize is not None:
            convert = self.normalization.convert if self.normalization is not None else None
            if convert is None:
                raise ConfigError("the teacher reads another normalisation, but no converter was given")
            x = convert(x, self.data_normalize, self.teacher_normalize)
        teacher = self.teacher
        if teacher is None or teacher.in_channels == 3:
            return x
        return torch.cat([x, self.teacher_encoder(batch["mask"], fixed=True).to(x.dtype)], 1)

    def forward(self, batch: Batch) -> dict[str, Tensor]:
        teacher = self.teacher
        if teacher is None:
            raise RuntimeError(
                "distill: no teacher attached (call set_teacher or build_method(..., teacher=...))"
            )
        p = self.params
        y = batch["mask"]
        with torch.no_grad():
            t: SegOutput = self._run_teacher(teacher, self.teacher_input(batch))
        s: SegOutput = self.network(batch["image"], keep_backbone=self._keep_backbone())
        ce, aux = seg_ce(s, y, self.ignore_index, p.aux_weight)
        loss = ce + p.aux_weight * aux
        terms: dict[str, Tensor] = {"ce": ce.detach(), "aux": aux.detach()}
        for name, weight, fn in zip(self.kd_names, self.kd_weights, self.loss_modules, strict=True):
            value = fn(s, t, y)
            loss = loss + weight * value
            terms[name] = value.detach()
        return {"loss": loss, **terms}

"""LAD stage 1: train a label-assisted teacher with dual-path consistency (method ``lad_teacher``).

Qiu et al., "Make a Strong Teacher with Label Assistance" (arXiv 2407.13254). The teacher reads the
image plus a noised label channel. Each step encodes the label twice with independent randomness
and runs the same network on both inputs::

    e1, e2 = enc(y), enc(y)
    o1, o2 = T([x, e1]), T([x, e2])
    loss = CE(o1) + CE(o2) + aux_weight * (auxCE(o1) + auxCE(o2))
           + w * [D(o1 -> sg(o2)) + D(o2 -> sg(o1))]        # on main logits, head resolution

The consistency term (CWD, tau 4, weight 5 in the reference) makes the teacher robust to the label
noise so it cannot just copy its label input. Validation feeds the fixed distillation codes (what the
teacher sees when it teaches); :meth:`LADTeacher.inference_input_without_label` feeds a zero label
channel, to measure how much the teacher leans on the label.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar

import torch
from torch import Tensor

from ladseg.errors import ConfigError
from ladseg.losses.base import IGNORE_INDEX, seg_ce
from ladseg.losses.consistency import CONSISTENCY
from ladseg.methods.base import METHODS, Batch, InputNormalization, Method, MethodParams
from ladseg.methods.label_encoding import EncoderParams, LabelEncoder, resolve_scale
from ladseg.models.segmentor import Segmentor, SegOutput

EVAL_LABELS = ("fixed", "random", "none")


@dataclass
class LADTeacherParams(MethodParams):
    """The ``method:`` section of a LAD teacher config.

    encoder: label encoding (``kind``, ``noise`` 0.03, ``scale``, ``corruption``; see ``EncoderParams``).
    two_path_batch: run both paths as one batch of 2B. Faster on a GPU, and for a network without
        BatchNorm the loss is identical; with BatchNorm the statistics are taken over the 2B samples
        (each image twice, with two label codings) instead of per path, so the two paths share one
        normalisation (the reference runs two separate passes).
    image_drop: per image and step, the probability that the teacher sees a blank image (the
        normalised mean, zeros) with its label: there the label is the only cue, so the label path
        must learn to carry the prediction (0 = the paper; about 0.3 as ControlNet drops prompts).
    fixed_code_anneal: "readable first": over this many training steps, each path of each image reads
        the fixed codes (one code per class, which a network reads at once but which give the class
        away) with a probability that falls linearly from 1 to 0, and the reference's per-image random
        codes otherwise; from then on only random codes (0 = the paper: random codes throughout).
        The step count is part of the method's state, so a resumed run continues the schedule.
    eval_label: label channel during validation: ``fixed`` codes (as in distillation), ``random``
        codes, or ``none`` (zeros). eval_noise: noise std of the fixed codes (0.02 as in distillation).
    """

    name: str = "lad_teacher"
    aux_weight: float = 0.4
    consistency: str = "cwd"
    consistency_weight: float = 5.0
    tau: float = 4.0
    encoder: EncoderParams = field(default_factory=EncoderParams)
    two_path_batch: bool = False
    image_drop: float = 0.0
    fixed_code_anneal: int = 0
    eval_label: str = "fixed"
    eval_noise: float = 0.02

    def check_config(self, key: str) -> None:
        """Values beyond types (called by the config validator when the config is read)."""
        if self.consistency not in CONSISTENCY:
            raise ConfigError(
                f"config key '{key}.consistency': unknown {self.consistency!r}; valid: {sorted(CONSISTENCY)}"
            )
        if self.eval_label not in EVAL_LABELS:
            raise ConfigError(
                f"config key '{key}.eval_label': expected one of {EVAL_LABELS}, got {self.eval_label!r}"
            )
        if self.tau <= 0:
            raise ConfigError(f"config key '{key}.tau': must be > 0, got {self.tau}")
        if not 0.0 <= self.image_drop <= 1.0:
            raise ConfigError(f"config key '{key}.image_drop': must be in [0, 1], got {self.image_drop}")
        if self.fixed_code_anneal < 0:
            raise ConfigError(
                f"config key '{key}.fixed_code_anneal': must be >= 0, got {self.fixed_code_anneal}"
            )


def check_label_input(model: Segmentor, encoder: LabelEncoder, role: str) -> None:
    """A label-assisted network must read 3 image channels + the encoder's channels."""
    expected = 3 + encoder.channels
    if model.in_channels != expected:
        raise ConfigError(
            f"{role} reads {model.in_channels} input channels, but the {encoder.params.kind!r} label encoding "
            f"needs 3 + {encoder.channels} = {expected} (set model.in_channels: {expected})"
        )


def split_output(out: SegOutput, n: int) -> tuple[SegOutput, SegOutput]:
    """Split a 2n-batch SegOutput into the outputs of its two halves."""

    def halves(t: Tensor | None) -> tuple[Tensor | None, Tensor | None]:
        return (None, None) if t is None else (t[:n], t[n:])

    logits, features, aux = halves(out.logits), halves(out.features), halves(out.aux_logits)
    extras = [{k: v[:n] for k, v in out.extras.items()}, {k: v[n:] for k, v in out.extras.items()}]
    return tuple(SegOutput(logits[i], features[i], aux[i], extras[i]) for i in range(2))  # type: ignore[return-value]


@METHODS.register("lad_teacher")
class LADTeacher(Method[LADTeacherParams]):
    """Dual-path consistency training of a label-assisted teacher (``model.in_channels = 3 + k``)."""

    Params = LADTeacherParams
    #: validation can also run without the label (``inference_input_without_label``).
    label_input: ClassVar[bool] = True

    def __init__(
        self, network: Segmentor, params: LADTeacherParams, num_classes: int, ignore_index: int = IGNORE_INDEX
    ) -> None:
        super().__init__(network, params, num_classes, ignore_index)
        self.encoder = LabelEncoder(params.encoder, num_classes, ignore_index)
        check_label_input(network, self.encoder, "the LAD teacher (model)")
        self._consistency = CONSISTENCY[params.consistency]
        if params.fixed_code_anneal > 0:  # the schedule's position, saved and resumed with the method
            self.register_buffer("anneal_step", torch.zeros((), dtype=torch.long))

    def fixed_code_prob(self) -> float:
        """This step's probability of the fixed codes under ``fixed_code_anneal`` (0 without it)."""
        n = self.params.fixed_code_anneal
        return max(0.0, 1.0 - int(self.anneal_step) / n) if n > 0 else 0.0

    def encode_for_training(self, y: Tensor) -> Tensor:
        """One path's label channels: random codes, or per image the fixed ones while annealing."""
        codes = self.encoder(y)
        prob = self.fixed_code_prob()
        if prob > 0:
            pick = torch.rand(y.shape[0], 1, 1, 1, device=y.device) < prob
            codes = torch.where(pick, self.encoder(y, fixed=True), codes)
        return codes

    def set_data_normalization(self, normalization: InputNormalization | None) -> None:
        """A named ``encoder.scale`` (``auto``: the batches' own) becomes its number from the engine's table."""
        super().set_data_normalization(normalization)
        enc = self.encoder.params
        scale = None
        if normalization is not None:
            scale = resolve_scale(enc.scale, normalization.name, normalization.label_scales)
        self.encoder = LabelEncoder(enc, self.num_classes, self.ignore_index, scale)

    def forward(self, batch: Batch) -> dict[str, Tensor]:
        p = self.params
        x, y = batch["image"], batch["mask"]
        if p.image_drop > 0:  # blank images: the label is the only cue there (both paths alike)
            keep = torch.rand(x.shape[0], 1, 1, 1, device=x.device) >= p.image_drop
            x = x * keep.to(x.dtype)
        e1, e2 = self.encode_for_training(y), self.encode_for_training(y)  # independent codes and noise
        if self.params.fixed_code_anneal > 0 and self.training:
            self.anneal_step += 1
        x1, x2 = torch.cat([x, e1.to(x.dtype)], 1), torch.cat([x, e2.to(x.dtype)], 1)
        if p.two_path_batch:
            o1, o2 = split_output(self.network(torch.cat([x1, x2], 0)), x.shape[0])
        else:
            o1, o2 = self.network(x1), self.network(x2)
        ce1, aux1 = seg_ce(o1, y, self.ignore_index, p.aux_weight)
        ce2, aux2 = seg_ce(o2, y, self.ignore_index, p.aux_weight)
        cons = self._consistency(o1.logits, o2.logits.detach(), p.tau) + self._consistency(
            o2.logits, o1.logits.detach(), p.tau
        )
        ce, aux = ce1 + ce2, aux1 + aux2
        loss = ce + p.aux_weight * aux + p.consistency_weight * cons
        return {"loss": loss, "ce": ce.detach(), "aux": aux.detach(), "consistency": cons.detach()}

    # -- evaluation --------------------------------------------------------------------
    def label_channels(self, batch: Batch, kind: str | None = None) -> Tensor:
        """The label channel(s) validation feeds: ``fixed`` / ``random`` codes or ``none`` (zeros).

        Noise comes from a private generator seeded per call, so validation is repeatable and never
        moves the training RNG.
        """
        p = self.params
        kind = kind or p.eval_label
        y = batch["mask"]
        if kind == "none":
            return y.new_zeros((y.shape[0], self.encoder.channels, *y.shape[-2:]), dtype=torch.float32)
        gen = torch.Generator(device=y.device).manual_seed(0)
        if kind == "fixed":
            return self.encoder(y, fixed=True, generator=gen, noise=p.eval_noise)
        return self.encoder(y, generator=gen, corrupt=False)

    def inference_input(self, batch: Batch) -> Tensor:
        x = batch["image"]
        return torch.cat([x, self.label_channels(batch).to(x.dtype)], 1)

    def inference_input_without_label(self, batch: Batch) -> Tensor:
        """Image + zero label channel: the teacher's accuracy when the label tells it nothing."""
        x = batch["image"]
        return torch.cat([x, self.label_channels(batch, "none").to(x.dtype)], 1)

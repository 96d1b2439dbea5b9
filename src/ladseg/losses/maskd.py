"""MasKD: masked distillation with receptive tokens (Huang et al., ICLR 2023), as the authors' segmentation code.

Two stages (hunto/MasKD, ``segmentation/``):

1. Receptive tokens (``train_mask_module.py``, method ``maskd_tokens``): T learnable tokens (T = 8,
   initialised N(0, 0.01^2)) of the width of the teacher's *logits*. Each gives a pixel mask
   ``m_k = sigmoid(token_k . z)`` over the frozen teacher's logits z; the tokens are trained with
   ``CE(z * sum_k m_k) + Dice diversity(m)`` while the teacher stays fixed.
2. Distillation (``losses/maskd.py`` ``MasKDLoss``, this loss): with the masks computed on the teacher's
   logits by the frozen tokens::

       L(s, t) = 0.5 * mean_{n,k,c} [ sum_hw m_k^2 (s_c - t_c)^2 / (sum_hw m_k + 1e-5) ]

   on the main logits, + ``aux_weight`` (0.4) x the same on the auxiliary logits (masks from the teacher's
   auxiliary logits, same tokens), as ``train_maskd.py`` does.

The tokens come from a file (``tokens:``): the ``maskd_tokens`` stage's ``last.pth`` (its resume state holds
them), the authors' released mask module (``{"mask_token": T x K}``) or a bare T x K tensor.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar

import torch
from torch import Tensor

from ladseg.errors import ConfigError
from ladseg.losses.base import IGNORE_INDEX, LOSSES, DistillLoss
from ladseg.losses.common import feature_pair
from ladseg.models.segmentor import SegOutput

#: the key of the tokens in the ``maskd_tokens`` method's state (``state.method`` of its checkpoints)
TOKENS_KEY = "tokens"
#: the key of the tokens in the authors' saved ``MaskModule`` state dict
AUTHORS_KEY = "mask_token"


def token_masks(tokens: Tensor, logits: Tensor) -> Tensor:
    """N x T x h x w masks ``sigmoid(token_k . z)`` of T x K ``tokens`` over N x K x h x w ``logits``.

    In float32 with autocast off: the masks weight squared errors, and bf16 products would move them.
    """
    with torch.autocast(logits.device.type, enabled=False):
        return torch.einsum("tk,nkhw->nthw", tokens.float(), logits.float()).sigmoid()


def dice_diversity(masks: Tensor) -> Tensor:
    """Mean Dice coefficient over the ordered pairs of different masks of each image (the token stage's
    diversity loss): ``2 <m_i, m_j> / (|m_i|^2 + |m_j|^2)``, with 1e-12 added to each squared norm."""
    flat = masks.flatten(2).float()
    t = flat.shape[1]
    with torch.autocast(flat.device.type, enabled=False):
        inner = flat @ flat.transpose(1, 2)  # N x T x T
    sq = (flat * flat).sum(-1) + 1e-12
    dice = 2 * inner / (sq[:, :, None] + sq[:, None, :])
    off_diagonal = ~torch.eye(t, dtype=torch.bool, device=flat.device)
    return dice[:, off_diagonal].sum() / (flat.shape[0] * t * (t - 1)) if t > 1 else dice.new_zeros(())


def masked_logit_distance(student: Tensor, teacher: Tensor, masks: Tensor) -> Tensor:
    """``0.5 * mean_{n,k,c} sum_hw m_k^2 (s_c - t_c)^2 / (sum_hw m_k + 1e-5)`` (the authors' ``MasKDLoss``)."""
    with torch.autocast(student.device.type, enabled=False):
        m = masks.float()
        err = torch.einsum("nthw,nchw->ntc", m * m, (student.float() - teacher.float()).pow(2))
    per_mask = err / (m.sum((2, 3))[:, :, None] + 1e-5)
    return 0.5 * per_mask.mean()


def load_tokens(path: str | Path, num_classes: int) -> Tensor:
    """The T x K tokens of ``path``, checked against the teacher's K logit channels (a ConfigError otherwise)."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(
            f"maskd tokens file {path} not found: train the token stage first (a maskd_tokens config, e.g. "
            "configs/cityscapes/maskd_tokens_deeplabv3_r101_10k_cityscapes_512x1024.yaml) and pass its last.pth"
        )
    try:
        payload: Any = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # a pickle of other objects, a truncated file, not a torch file
        raise ConfigError(f"maskd tokens file {path} cannot be read as plain tensors: {exc}") from None
    tokens = _find_tokens(payload, path)
    if tokens.dim() != 2 or tokens.shape[1] != num_classes or tokens.shape[0] < 1:
        raise ConfigError(
            f"maskd tokens in {path} have shape {tuple(tokens.shape)}, but this teacher's logits have "
            f"{num_classes} channels: expected T x {num_classes} (tokens learned on a teacher of these classes)"
        )
    return tokens.detach().float().clone()


def _find_tokens(payload: Any, path: Path) -> Tensor:
    """The tokens of a bare tensor, the authors' mask module, or a ladseg checkpoint's method state."""
    if isinstance(payload, Tensor):
        return payload
    if isinstance(payload, dict):
        for key in (AUTHORS_KEY, TOKENS_KEY):
            if isinstance(payload.get(key), Tensor):
                return payload[key]
        state = payload.get("state")
        if isinstance(state, dict) and isinstance(state.get("method"), dict):
            found = state["method"].get(TOKENS_KEY)
            if isinstance(found, Tensor):
                return found
            method = ((payload.get("meta") or {}).get("config") or {}).get("method", {}).get("name")
            raise ConfigError(
                f"maskd tokens: {path} is a checkpoint of method {method!r}, not of the maskd_tokens stage"
            )
        if "meta" in payload:
            raise ConfigError(
                f"maskd tokens: {path} is a ladseg checkpoint without its resume state (e.g. best.pth): "
                "pass the maskd_tokens stage's last.pth"
            )
    raise ConfigError(
        f"maskd tokens: {path} holds no tokens (expected the maskd_tokens stage's last.pth, "
        f"the authors' mask module {{'{AUTHORS_KEY}': T x K}} or a T x K tensor)"
    )


@LOSSES.register("maskd")
class MasKDLoss(DistillLoss):
    """Mask-weighted logit distillation with receptive tokens learned on the teacher (see the module doc).

    ``tokens``: the token file (required). ``aux_weight`` 0.4: the same loss on the auxiliary logits, as the
    authors' ResNet students (0 or a network without auxiliary head: main logits only). The tokens are a
    buffer: never trained here, saved with the method state so a resumed run keeps the ones it started with.
    """

    default_weight: ClassVar[float] = 1.0

    def __init__(
        self,
        student_channels: int,
        teacher_channels: int,
        num_classes: int,
        tokens: str | None = None,
        aux_weight: float = 0.4,
        *,
        ignore_index: int = IGNORE_INDEX,
    ) -> None:
        super().__init__(student_channels, teacher_channels, num_classes, ignore_index=ignore_index)
        if not tokens:
            raise ConfigError(
                "maskd needs the receptive tokens learned on this teacher: train the token stage (method "
                "maskd_tokens) and set the loss's tokens: path/to/that run's last.pth"
            )
        if aux_weight < 0:
            raise ConfigError(f"maskd aux_weight must be >= 0, got {aux_weight}")
        self.aux_weight = float(aux_weight)
        self.uses_teacher_aux = self.aux_weight > 0
        self.register_buffer("tokens", load_tokens(tokens, num_classes))

    @classmethod
    def check_options(cls, tokens: str | None = None, aux_weight: float = 0.4, **_: Any) -> None:
        """``tokens`` may still be unset where the config is read (it names a run to come)."""
        if aux_weight < 0:
            raise ConfigError(f"maskd aux_weight must be >= 0, got {aux_weight}")

    def _term(self, student: Tensor, teacher: Tensor) -> Tensor:
        s, t = feature_pair(student, teacher)
        return masked_logit_distance(s, t, token_masks(self.tokens, t))

    def forward(self, student: SegOutput, teacher: SegOutput, mask: Tensor) -> Tensor:
        loss = self._term(student.logits, teacher.logits)
        if self.aux_weight and student.aux_logits is not None and teacher.aux_logits is not None:
            loss = loss + self.aux_weight * self._term(student.aux_logits, teacher.aux_logits)
        return loss


__all__ = ["MasKDLoss", "dice_diversity", "load_tokens", "masked_logit_distance", "token_masks"]

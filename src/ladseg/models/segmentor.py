"""The segmentor: backbone -> decode head (+ optional auxiliary head), one structured output.

Call graph of ``Segmentor.forward(x)``::

    feats = backbone(x)                      # list of stage outputs, e.g. [c1, c2, c3, c4]
                                             # (with a label branch: the stem reads x[:, :3] and
                                             #  label_branch(x[:, 3:]) is added to its output)
    out = decode_head(feats)                 # SegOutput(logits, features, aux_logits?, extras)
    if aux_head and training and out.aux_logits is None:
        out.aux_logits = aux_head(feats)     # FCN head on feats[aux_index] (c3 for ResNets)
    return out                               # logits at head resolution (1/8 for OS8)

Logits stay at head resolution, as in the reference code; losses and evaluation up-sample them
to the label size with :func:`resize_logits` (bilinear, align_corners=True).
Distillation losses read ``out.features`` (the tensor before the classifier), so no forward hooks.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import Tensor, nn

ALIGN_CORNERS = True  # the reference code's convention for every up-sampling
#: ``SegOutput.extras`` key of the backbone's last stage (``Segmentor.forward(x, keep_backbone=True)``)
BACKBONE_KEY = "backbone"


@dataclass
class SegOutput:
    """What every segmentor returns.

    logits: N x K x h x w main logits at head resolution.
    features: N x C x h x w decoder features (input of the main classifier).
    aux_logits: auxiliary logits (training only) or None.
    extras: head-specific tensors, e.g. ``detail`` logits of STDC's detail guidance.
    """

    logits: Tensor
    features: Tensor
    aux_logits: Tensor | None = None
    extras: dict[str, Tensor] = field(default_factory=dict)


def resize_logits(logits: Tensor, size: tuple[int, int] | torch.Size) -> Tensor:
    """Bilinear resize with align_corners=True (no-op when the size already matches)."""
    if tuple(logits.shape[-2:]) == tuple(size):
        return logits
    return F.interpolate(logits, size=tuple(size), mode="bilinear", align_corners=ALIGN_CORNERS)


class Segmentor(nn.Module):
    """Backbone + decode head + optional auxiliary head.

    ``in_channels`` is 3 for an ordinary model and 3 + k for a LAD teacher that reads k label
    channels after the image channels; only the backbone's first conv sees the difference, or, with
    a ``label_branch`` (:class:`~ladseg.models.label_branch.LabelBranch`), the branch reads the
    label channels and adds its features to the backbone's stem output.
    """

    def __init__(
        self,
        backbone: nn.Module,
        decode_head: nn.Module,
        aux_head: nn.Module | None = None,
        aux_index: int = -2,
        name: str = "",
        label_branch: nn.Module | None = None,
    ) -> None:
        super().__init__()
        self.backbone = backbone
        self.decode_head = decode_head
        self.aux_head = aux_head
        self.aux_index = aux_index
        self.name = name
        self.label_branch = label_branch  # None: no submodule, the state dict is an image-only model's

    @property
    def in_channels(self) -> int:
        branch = self.label_branch
        return int(self.backbone.in_channels) + (int(branch.in_channels) if branch is not None else 0)

    @property
    def num_classes(self) -> int:
        return int(self.decode_head.num_classes)

    def forward(self, x: Tensor, keep_backbone: bool = False) -> SegOutput:
        """``keep_backbone``: also return the backbone's last stage as ``extras["backbone"]`` (for
        distillation losses that read it, e.g. Af-DCD on ``c4``); deployment never asks for it."""
        feats = self.backbone_features(x)
        out: SegOutput = self.decode_head(feats)
        if self.aux_head is not None and self.training and out.aux_logits is None:
            out.aux_logits = self.aux_head(feats[self.aux_index])
        if keep_backbone:
            out.extras[BACKBONE_KEY] = feats[-1]
        return out

    def backbone_features(self, x: Tensor) -> list[Tensor]:
        """The backbone's stage outputs for the network's input (image + label channels of a teacher)."""
        branch = self.label_branch
        if branch is None:
            return self.backbone(x)
        image_channels = int(self.backbone.in_channels)
        if x.shape[1] != self.in_channels:
            raise RuntimeError(
                f"{self.name or 'this network'} reads {self.in_channels} input channels ({image_channels} image + "
                f"{branch.in_channels} label channels, through its label branch), got {x.shape[1]}"
            )
        stem = self.backbone.forward_stem(x[:, :image_channels])
        return self.backbone.forward_stages(stem + branch(x[:, image_channels:]))

    @torch.no_grad()
    def predict(self, x: Tensor) -> Tensor:
        """Logits up-sampled to the input size (what deployment and evaluation want)."""
        return resize_logits(self(x).logits, x.shape[-2:])

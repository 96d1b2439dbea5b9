"""CIRKD: cross-image relational KD (Yang et al., CVPR 2022), on decoder features.

Three entries: ``cirkd_minibatch`` (pixel-to-pixel similarities across the images of the batch),
``cirkd_memory`` (pixel-to-pixel and pixel-to-region contrast against memory queues of teacher
embeddings) and ``cirkd`` (their sum with the paper's weights). CIRKD pairs them with pixel KD
(the ``kd`` loss, tau 1, weight 1); the configs list it beside ``cirkd``.
"""

from __future__ import annotations

from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ladseg.errors import ConfigError
from ladseg.losses.base import IGNORE_INDEX, LOSSES, DistillLoss
from ladseg.losses.common import feature_pair, labels_to, positive, softened_kl
from ladseg.models.segmentor import SegOutput
from ladseg.process_group import all_gather_cat


def kl_rows(s_logits: Tensor, t_logits: Tensor, tau: float = 1.0) -> Tensor:
    """``tau^2 * mean over rows of KL(softmax(t/tau) || softmax(s/tau))`` (KL's 'batchmean')."""
    return softened_kl(s_logits, t_logits, tau, dim=-1).mean() * tau**2


def minibatch_pair_loss(s_feat: Tensor, t_feat: Tensor, tau: float = 0.1, pooling: bool = False) -> Tensor:
    """Mean over the N*N image pairs (i, j) of the row-wise KL between pixel-similarity distributions.

    Row p of pair (i, j) is the softmax over the pixels q of image j of ``cos(f_i[p], f_j[q]) / tau``.
    No temperature^2 factor (as CIRKD). Memory is O(N^2 (h*w)^2); ``pooling`` halves each side first.
    """
    if pooling:
        s_feat = F.avg_pool2d(s_feat, 2, 2, ceil_mode=True)
        t_feat = F.avg_pool2d(t_feat, 2, 2, ceil_mode=True)
    s = F.normalize(s_feat.flatten(2), dim=1).transpose(1, 2)  # N x P x C
    t = F.normalize(t_feat.flatten(2), dim=1).transpose(1, 2)
    n = s.shape[0]
    total = s.new_zeros(())
    for i in range(n):  # one anchor image against all N at a time bounds the peak memory
        s_sim = torch.einsum("pc,nqc->npq", s[i], s)
        t_sim = torch.einsum("pc,nqc->npq", t[i], t)
        total = total + _pair_kl(s_sim, t_sim, tau)
    return total / (n * n)


def _pair_kl(s_sim: Tensor, t_sim: Tensor, tau: float) -> Tensor:
    """Sum over the pairs in the leading dim of each pair's row-mean KL at temperature tau."""
    return softened_kl(s_sim, t_sim, tau, dim=-1).mean(dim=-1).sum()


@LOSSES.register("cirkd_minibatch")
class CIRKDMiniBatchLoss(DistillLoss):
    """Mini-batch pixel-to-pixel relation distillation; widths may differ (the relations are P x P).

    Defaults: temperature 0.1 and weight 1 (CIRKD ``--contrast-temperature 0.1``,
    ``--lambda-minibatch-pixel 1``); the batch is the local one (CIRKD's cross-GPU gather is disabled).
    """

    default_weight: ClassVar[float] = 1.0

    def __init__(
        self,
        student_channels: int,
        teacher_channels: int,
        num_classes: int,
        tau: float = 0.1,
        pooling: bool = False,
        *,
        ignore_index: int = IGNORE_INDEX,
    ) -> None:
        super().__init__(student_channels, teacher_channels, num_classes, ignore_index=ignore_index)
        self.tau = positive("cirkd_minibatch tau", tau)
        self.pooling = bool(pooling)

    def forward(self, student: SegOutput, teacher: SegOutput, mask: Tensor) -> Tensor:
        s, t = feature_pair(student.features, teacher.features)
        return minibatch_pair_loss(s, t, self.tau, self.pooling)


class TeacherMemory:
    """Per-class queues of L2-normalised teacher embeddings: pixels and regions (class means per image).

    Plain tensors, not registered buffers, on purpose: at CIRKD's sizes (20000 pixels and 2000 regions
    per class, 256 channels) they weigh ~0.4 GB, which DDP would broadcast every step and checkpoints
    would carry. They are created on the first update (on the features' device) and refill within a
    few hundred iterations after a resume. Initial content is random unit vectors, as in CIRKD.
    """

    def __init__(
        self, num_classes: int, dim: int, pixel_size: int, region_size: int, pixel_update: int
    ) -> None:
        self.num_classes, self.dim = num_classes, dim
        self.pixel_size, self.region_size, self.pixel_update = pixel_size, region_size, pixel_update
        self.pixels: Tensor | None = None  # K x pixel_size x C
        self.regions: Tensor | None = None  # K x region_size x C
        self.pixel_ptr = [0] * num_classes
        self.region_ptr = [0] * num_classes

    def _ensure(self, ref: Tensor) -> None:
        if self.pixels is None or self.regions is None or self.pixels.device != ref.device:
            shape = (self.num_classes, self.pixel_size, self.dim)
            self.pixels = F.normalize(torch.randn(shape, device=ref.device), dim=2)
            shape = (self.num_classes, self.region_size, self.dim)
            self.regions = F.normalize(torch.randn(shape, device=ref.device), dim=2)

    @torch.no_grad()
    def update(self, feats: Tensor, labels: Tensor, ignore_index: int) -> None:
        """Enqueue each image's class means and up to ``pixel_update`` random pixels per class."""
        self._ensure(feats)
        assert self.pixels is not None and self.regions is not None
        feats, labels = all_gather_cat(feats.float()), all_gather_cat(labels)
        for f, lab in zip(feats.flatten(2), labels.flatten(1), strict=True):
            for k in lab.unique().tolist():
                if k == ignore_index or not 0 <= k < self.num_classes:
                    continue
                members = f[:, lab == k]  # C x n
                ptr = self.region_ptr[k]
                self.regions[k, ptr] = F.normalize(members.mean(dim=1), dim=0)
                self.region_ptr[k] = (ptr + 1) % self.region_size
                take = members[:, torch.randperm(members.shape[1], device=f.device)[: self.pixel_update]].t()
                n, ptr = take.shape[0], self.pixel_ptr[k]
                if ptr + n >= self.pixel_size:  # CIRKD: the last n slots, then restart at 0
                    self.pixels[k, -n:] = F.normalize(take, dim=1)
                    self.pixel_ptr[k] = 0
                else:
                    self.pixels[k, ptr : ptr + n] = F.normalize(take, dim=1)
                    self.pixel_ptr[k] = ptr + n

    def sample(self, pixel_per_class: int, region_per_class: int) -> tuple[Tensor, Tensor]:
        """The contrast sets: the same random slots in every class, (K*n) x C each."""
        assert self.pixels is not None and self.regions is not None
        pix = torch.randperm(self.pixel_size, device=self.pixels.device)[:pixel_per_class]
        reg = torch.randperm(self.region_size, device=self.regions.device)[:region_per_class]
        return self.pixels[:, pix].reshape(-1, self.dim), self.regions[:, reg].reshape(-1, self.dim)


@LOSSES.register("cirkd_memory")
class CIRKDMemoryLoss(DistillLoss):
    """Memory-based pixel-to-pixel and pixel-to-region contrast distillation.

    Student embeddings (projected to the teacher's width by conv-BN-ReLU-conv when widths differ,
    or always with ``projector: true``) and teacher embeddings of the labelled (non-ignore) pixels are
    compared, by softmax at ``contrast_tau`` over their similarities to teacher embeddings sampled from
    the queues, with a KL at ``kd_tau``. The queues are filled with the current teacher batch first.
    Defaults are CIRKD's ``train_cirkd.py``: memories 20000/2000, contrast 4096/1024 (split over classes),
    tau 0.1, KD tau 1, weights 0.1 + 0.1 (Cityscapes; CIRKD's VOC script uses 0.01 + 0.01).
    """

    default_weight: ClassVar[float] = 1.0

    def __init__(
        self,
        student_channels: int,
        teacher_channels: int,
        num_classes: int,
        pixel_weight: float = 0.1,
        region_weight: float = 0.1,
        pixel_memory_size: int = 20000,
        region_memory_size: int = 2000,
        pixel_contrast_size: int = 4096,
        region_contrast_size: int = 1024,
        pixel_update_freq: int = 16,
        contrast_tau: float = 0.1,
        kd_tau: float = 1.0,
        projector: bool | None = None,
        *,
        ignore_index: int = IGNORE_INDEX,
    ) -> None:
        super().__init__(student_channels, teacher_channels, num_classes, ignore_index=ignore_index)
        for name, value in [("pixel_memory_size", pixel_memory_size), ("region_memory_size", region_memory_size),
                            ("pixel_contrast_size", pixel_contrast_size), ("region_contrast_size", region_contrast_size),
                            ("pixel_update_freq", pixel_update_freq)]:  # fmt: skip
            if int(value) < 1:
                raise ConfigError(f"cirkd_memory {name} must be >= 1, got {value}")
        if pixel_weight < 0 or region_weight < 0:
            raise ConfigError("cirkd_memory pixel_weight and region_weight must be >= 0")
        self.pixel_weight, self.region_weight = float(pixel_weight), float(region_weight)
        self.contrast_tau = positive("cirkd_memory contrast_tau", contrast_tau)
        self.kd_tau = positive("cirkd_memory kd_tau", kd_tau)
        self.pixel_per_class = min(int(pixel_contrast_size) // num_classes + 1, int(pixel_memory_size))
        self.region_per_class = min(int(region_contrast_size) // num_classes + 1, int(region_memory_size))
        if projector is None:
            projector = student_channels != teacher_channels
        if not projector and student_channels != teacher_channels:
            raise ConfigError(
                f"cirkd_memory: widths {student_channels} != {teacher_channels} need projector: true"
            )
        self.projector: nn.Module = nn.Identity()
        if projector:
            self.projector = nn.Sequential(
                nn.Conv2d(student_channels, teacher_channels, 1, bias=False),
                nn.BatchNorm2d(teacher_channels),
                nn.ReLU(inplace=True),
                nn.Conv2d(teacher_channels, teacher_channels, 1, bias=False),
            )
        self.memory = TeacherMemory(
            num_classes,
            teacher_channels,
            int(pixel_memory_size),
            int(region_memory_size),
            int(pixel_update_freq),
        )

    def forward(self, student: SegOutput, teacher: SegOutput, mask: Tensor) -> Tensor:
        s, t = feature_pair(student.features, teacher.features)
        s = F.normalize(self.projector(s).float(), dim=1)
        t = F.normalize(t, dim=1)
        labels = labels_to(mask, s.shape[-2:])
        self.memory.update(t, labels, self.ignore_index)
        valid = ((labels != self.ignore_index) & (labels >= 0) & (labels < self.num_classes)).flatten()
        if not bool(valid.any()):
            return 0.0 * s.sum()  # keeps the graph (DDP expects every parameter to get a gradient)
        s_anchor = s.permute(0, 2, 3, 1).reshape(-1, s.shape[1])[valid]
        t_anchor = t.permute(0, 2, 3, 1).reshape(-1, t.shape[1])[valid]
        pixels, regions = self.memory.sample(self.pixel_per_class, self.region_per_class)
        loss = s.new_zeros(())
        for weight, bank in ((self.pixel_weight, pixels), (self.region_weight, regions)):
            if weight:
                s_logits = s_anchor @ bank.t() / self.contrast_tau
                t_logits = t_anchor @ bank.t() / self.contrast_tau
                loss = loss + weight * kl_rows(s_logits, t_logits, self.kd_tau)
        return loss


@LOSSES.register("cirkd")
class CIRKDLoss(DistillLoss):
    """CIRKD's relational terms together: ``minibatch_weight * cirkd_minibatch + cirkd_memory``.

    Parameters are those of the two parts (``minibatch_tau``/``pooling`` for the mini-batch term, the
    rest as in ``cirkd_memory``). Add the ``kd`` loss beside it for CIRKD's full recipe.
    """

    default_weight: ClassVar[float] = 1.0

    def __init__(
        self,
        student_channels: int,
        teacher_channels: int,
        num_classes: int,
        minibatch_weight: float = 1.0,
        minibatch_tau: float = 0.1,
        pooling: bool = False,
        pixel_weight: float = 0.1,
        region_weight: float = 0.1,
        pixel_memory_size: int = 20000,
        region_memory_size: int = 2000,
        pixel_contrast_size: int = 4096,
        region_contrast_size: int = 1024,
        pixel_update_freq: int = 16,
        contrast_tau: float = 0.1,
        kd_tau: float = 1.0,
        projector: bool | None = None,
        *,
        ignore_index: int = IGNORE_INDEX,
    ) -> None:
        super().__init__(student_channels, teacher_channels, num_classes, ignore_index=ignore_index)
        if minibatch_weight < 0:
            raise ConfigError(f"cirkd minibatch_weight must be >= 0, got {minibatch_weight}")
        self.minibatch_weight = float(minibatch_weight)
        self.minibatch = CIRKDMiniBatchLoss(
            student_channels, teacher_channels, num_classes, tau=minibatch_tau, pooling=pooling,
            ignore_index=ignore_index,
        )  # fmt: skip
        self.memory = CIRKDMemoryLoss(
            student_channels, teacher_channels, num_classes, pixel_weight=pixel_weight,
            region_weight=region_weight, pixel_memory_size=pixel_memory_size,
            region_memory_size=region_memory_size, pixel_contrast_size=pixel_contrast_size,
            region_contrast_size=region_contrast_size, pixel_update_freq=pixel_update_freq,
            contrast_tau=contrast_tau, kd_tau=kd_tau, projector=projector, ignore_index=ignore_index,
        )  # fmt: skip

    def forward(self, student: SegOutput, teacher: SegOutput, mask: Tensor) -> Tensor:
        return self.minibatch_weight * self.minibatch(student, teacher, mask) + self.memory(
            student, teacher, mask
        )


__all__ = [
    "CIRKDLoss",
    "CIRKDMemoryLoss",
    "CIRKDMiniBatchLoss",
    "TeacherMemory",
    "kl_rows",
    "minibatch_pair_loss",
]

"""Segmentation metrics as the field counts them: one confusion matrix over the whole split.

Intersection and union are accumulated over every pixel of the split (not averaged per image).
Per-class IoU is NaN for a class absent from both the ground truth and the predictions, and
per-class accuracy is NaN for a class absent from the ground truth; mIoU and mAcc average over
the classes that are defined (present), as mmsegmentation and torchmetrics do. Counting absent
classes as 0, as some research code does, understates mIoU on small splits.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from ladseg.engine.dist import all_reduce_sum
from ladseg.labels import IGNORE_INDEX


class ConfusionMatrix:
    """K x K counts (rows: ground truth, columns: prediction), accumulated on the device with bincount."""

    def __init__(
        self, num_classes: int, ignore_index: int = IGNORE_INDEX, device: torch.device | str = "cpu"
    ) -> None:
        self.num_classes = num_classes
        self.ignore_index = ignore_index
        self.mat = torch.zeros(num_classes, num_classes, dtype=torch.long, device=device)

    @torch.no_grad()
    def update(self, pred: Tensor, target: Tensor) -> None:
        """``pred`` and ``target``: integer label maps of the same shape; ignore_index pixels skipped."""
        if pred.shape != target.shape:
            raise ValueError(
                f"prediction {tuple(pred.shape)} and target {tuple(target.shape)} differ in shape"
            )
        k = self.num_classes
        target = target.to(self.mat.device).long().flatten()
        pred = pred.to(self.mat.device).long().flatten()
        valid = (target != self.ignore_index) & (target >= 0) & (target < k)
        idx = target[valid] * k + pred[valid]
        self.mat += torch.bincount(idx, minlength=k * k).reshape(k, k)

    def reduce(self) -> None:
        """Sum the counts over processes (no-op without a process group)."""
        all_reduce_sum(self.mat)

    def compute(self, class_names: Sequence[str] | None = None) -> SegMetrics:
        return SegMetrics(self.mat.detach().cpu().clone(), list(class_names) if class_names else None)


@dataclass
class SegMetrics:
    """Metrics of one confusion matrix. Values are fractions in [0, 1]; ``summary`` gives percent."""

    confusion: Tensor
    class_names: list[str] | None = None

    @property
    def num_classes(self) -> int:
        return int(self.confusion.shape[0])

    def _per_class(self) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        mat = self.confusion.double()
        tp = mat.diag()
        gt = mat.sum(1)
        pred = mat.sum(0)
        return tp, gt, pred, gt + pred - tp

    @property
    def iou(self) -> Tensor:
        """Per-class IoU; NaN where the class is in neither ground truth nor prediction."""
        tp, _, _, union = self._per_class()
        return torch.where(union > 0, tp / union.clamp(min=1), torch.full_like(tp, math.nan))

    @property
    def acc(self) -> Tensor:
        """Per-class accuracy (recall); NaN where the class is absent from the ground truth."""
        tp, gt, _, _ = self._per_class()
        return torch.where(gt > 0, tp / gt.clamp(min=1), torch.full_like(tp, math.nan))

    @property
    def aacc(self) -> float:
        total = self.confusion.sum().item()
        return float(self.confusion.diag().sum().item() / total) if total else math.nan

    @property
    def miou(self) -> float:
        return float(self.iou.nanmean().item())

    @property
    def macc(self) -> float:
        return float(self.acc.nanmean().item())

    def names(self) -> list[str]:
        return self.class_names or [str(i) for i in range(self.num_classes)]

    def summary(self) -> dict[str, float]:
        """``{"aAcc", "mIoU", "mAcc"}`` in percent (the field's unit)."""
        return {"aAcc": 100 * self.aacc, "mIoU": 100 * self.miou, "mAcc": 100 * self.macc}

    def to_dict(self) -> dict[str, Any]:
        """Summary plus per-class IoU/Acc in percent (None for absent classes), JSON-ready."""

        def pct(t: Tensor) -> dict[str, float | None]:
            return {
                n: (None if math.isnan(v) else 100 * v) for n, v in zip(self.names(), t.tolist(), strict=True)
            }

        return {**self.summary(), "IoU": pct(self.iou), "Acc": pct(self.acc)}

    def table(self) -> str:
        """Per-class IoU/Acc, then aAcc, mIoU, mAcc (percent, mmsegmentation's layout)."""
        names = self.names()
        width = max(8, *(len(n) for n in names))
        lines = [f"{'Class':<{width}}  {'IoU':>7}  {'Acc':>7}", "-" * (width + 18)]
        for name, iou, acc in zip(names, self.iou.tolist(), self.acc.tolist(), strict=True):
            lines.append(f"{name:<{width}}  {_fmt(iou):>7}  {_fmt(acc):>7}")
        lines.append("-" * (width + 18))
        s = self.summary()
        lines.append(f"aAcc {s['aAcc']:.2f}  mIoU {s['mIoU']:.2f}  mAcc {s['mAcc']:.2f}")
        return "\n".join(lines)


def _fmt(v: float) -> str:
    return "n/a" if math.isnan(v) else f"{100 * v:.2f}"

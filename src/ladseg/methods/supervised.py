"""Supervised training (the baseline every distillation result is compared with).

loss = CE(main logits up-sampled to the mask) + aux_weight * CE(auxiliary logits), ignoring unlabelled pixels;
the reference recipe uses aux_weight 0.4 (PSPNet, Zhao et al. 2017, deep supervision).
Baselines and distillation run through the same engine and config, so gains are comparable.
"""

from __future__ import annotations

from dataclasses import dataclass

from torch import Tensor

from ladseg.losses.base import seg_ce
from ladseg.methods.base import METHODS, Batch, Method, MethodParams


@dataclass
class SupervisedParams(MethodParams):
    """``method:`` section of a supervised config: ``aux_weight`` (0.4 in the reference)."""

    name: str = "supervised"
    aux_weight: float = 0.4


@METHODS.register("supervised")
class Supervised(Method[SupervisedParams]):
    """Cross-entropy on the network's main and auxiliary logits (a baseline student or a teacher)."""

    Params = SupervisedParams

    def forward(self, batch: Batch) -> dict[str, Tensor]:
        mask = batch["mask"]
        out = self.network(batch["image"])
        ce, aux = seg_ce(out, mask, self.ignore_index, self.params.aux_weight)
        return {"loss": ce + self.params.aux_weight * aux, "ce": ce, "aux_ce": aux}

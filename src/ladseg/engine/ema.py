"""An exponential moving average (EMA) of a network's weights, validated and saved instead of them.

Why: a short or small-batch run ends wherever its last few noisy steps left it, so two seeds of
the same recipe can differ by several mIoU. Averaging the weights over the last ~1/(1-decay)
steps (Polyak averaging, as timm's ``ModelEmaV2`` and mmdet's ``EMAHook`` do) gives a network
near the middle of that walk: validation is steadier and usually a little better.

``train.ema_decay: 0.99`` turns it on. Parameters and floating-point buffers (BatchNorm running
statistics) are averaged; integer buffers are copied. Early on the decay is capped at
``(1 + n) / (10 + n)`` after ``n`` updates, so the average is not dominated by the first weights.
The averaged tensors are swapped into the live network only while validating
(:meth:`WeightAverage.applied`) and are read by name when saving (:meth:`averaged_state_dict`),
so the method, its wrappers and DDP never see a second network.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import torch
from torch import Tensor, nn


class WeightAverage:
    """Shadow copies of ``model``'s parameters and buffers, updated by :meth:`update`."""

    def __init__(self, model: nn.Module, decay: float) -> None:
        if not 0.0 < decay < 1.0:
            raise ValueError(f"EMA decay must be in (0, 1), got {decay}")
        self.decay = decay
        self.updates = 0
        self.names = [name for name, _ in self._named_tensors(model)]
        self.shadow = [t.detach().clone() for _, t in self._named_tensors(model)]

    @staticmethod
    def _named_tensors(model: nn.Module) -> Iterator[tuple[str, Tensor]]:
        yield from model.named_parameters()
        yield from model.named_buffers()

    def _live(self, model: nn.Module) -> list[Tensor]:
        live = list(self._named_tensors(model))
        if [n for n, _ in live] != self.names:
            raise ValueError("EMA: the network's parameters and buffers changed since the average began")
        return [t for _, t in live]

    def current_decay(self) -> float:
        return min(self.decay, (1 + self.updates) / (10 + self.updates))

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        """One step of ``shadow <- decay * shadow + (1 - decay) * weights`` (after an optimiser step)."""
        self.updates += 1
        weight = 1.0 - self.current_decay()
        floats, float_live = [], []
        for s, t in zip(self.shadow, self._live(model), strict=True):
            if s.is_floating_point():
                floats.append(s)
                float_live.append(t.detach().to(s.dtype))
            else:
                s.copy_(t)  # e.g. BatchNorm's num_batches_tracked
        if floats:
            torch._foreach_lerp_(floats, float_live, weight)

    @contextmanager
    def applied(self, model: nn.Module) -> Iterator[None]:
        """Inside the block ``model`` holds the averaged weights; its own come back afterwards."""
        live = self._live(model)
        with torch.no_grad():
            saved = [t.detach().clone() for t in live]
            for t, s in zip(live, self.shadow, strict=True):
                t.copy_(s)
        try:
            yield
        finally:
            with torch.no_grad():
                for t, s in zip(live, saved, strict=True):
                    t.copy_(s)

    def _by_name(self) -> dict[str, Tensor]:
        return dict(zip(self.names, self.shadow, strict=True))

    def averaged_state_dict(self, model: nn.Module) -> dict[str, Tensor]:
        """``model.state_dict()`` with copies of the averaged tensors in place of its own (what is saved)."""
        shadow = self._by_name()
        return {k: shadow[k].clone() if k in shadow else v for k, v in model.state_dict().items()}

    def state_dict(self) -> dict[str, Any]:
        return {"decay": self.decay, "updates": self.updates, "shadow": self._by_name()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        shadow = state["shadow"]
        if list(shadow) != self.names:
            raise ValueError("EMA state does not match the network (different parameter names)")
        with torch.no_grad():
            for s, name in zip(self.shadow, self.names, strict=True):
                s.copy_(shadow[name])
        self.updates = int(state["updates"])

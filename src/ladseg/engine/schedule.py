"""Poly learning-rate schedule with optional linear warm-up (the segmentation field's default).

lr(i) = base_lr * (1 - i / max_iters) ** power, and during the first ``warmup_iters``
iterations the factor ramps linearly from ``warmup_ratio`` to 1 (mmsegmentation's "linear"
warm-up). Per-group base rates are kept in ``group["initial_lr"]`` so a head learning-rate
multiplier survives the schedule.
"""

from __future__ import annotations

from typing import Any

from torch.optim import Optimizer


class PolySchedule:
    """Sets every param group's lr for an iteration; its state is the iteration only."""

    def __init__(
        self,
        optimizer: Optimizer,
        max_iters: int,
        power: float = 0.9,
        warmup_iters: int = 0,
        warmup_ratio: float = 0.1,
        min_lr: float = 0.0,
    ) -> None:
        self.optimizer = optimizer
        self.max_iters = max_iters
        self.power = power
        self.warmup_iters = warmup_iters
        self.warmup_ratio = warmup_ratio
        self.min_lr = min_lr
        self.iteration = 0
        for group in optimizer.param_groups:
            group.setdefault("initial_lr", group["lr"])
        self.step(0)

    def factor(self, iteration: int) -> float:
        progress = min(iteration, self.max_iters) / max(1, self.max_iters)
        factor = (1.0 - progress) ** self.power
        if iteration < self.warmup_iters:
            ramp = self.warmup_ratio + (1.0 - self.warmup_ratio) * iteration / self.warmup_iters
            factor *= ramp
        return factor

    def step(self, iteration: int) -> None:
        """Set the learning rates for ``iteration`` (0-based, the step about to run)."""
        self.iteration = iteration
        f = self.factor(iteration)
        for group in self.optimizer.param_groups:
            group["lr"] = max(self.min_lr, group["initial_lr"] * f)

    def get_lr(self) -> float:
        return float(self.optimizer.param_groups[0]["lr"])

    def state_dict(self) -> dict[str, Any]:
        return {"iteration": self.iteration}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.step(int(state["iteration"]))

"""Seconds per training step of several configs, measured in turns under one load.

Why: a control given a method's wall-clock ("plain training for as long as the distillation took")
needs the ratio of two step costs, and two runs' logs measure each under whatever else the machine
was doing at the time, which can move the ratio more than the methods differ. Stepping the runs in
turns (A, B, A, B, ...) gives every config the same load, so the ratio holds even on a busy machine.
Figures measured both ways: ``docs/results/camvid_kd/time_matched_scratch.json``.

One step here is what one iteration of :meth:`Trainer.fit` times: reading the next batch and the
optimisation step (the loss's finiteness check syncs a CUDA device); no logging, validation or
checkpoint, which cost the same for every config of a benchmark.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable, Iterator, Sequence
from typing import TYPE_CHECKING, Any

from ladseg.engine.config import Config

if TYPE_CHECKING:
    from ladseg.engine.trainer import Trainer


def interleaved_seconds(
    steps: Sequence[Callable[[], object]],
    rounds: int = 20,
    warmup: int = 3,
    clock: Callable[[], float] = time.perf_counter,
) -> list[float]:
    """The median seconds of each of ``steps``, called in turns: ``warmup`` untimed rounds (first calls
    allocate and warm caches), then ``rounds`` timed ones. The median, so that one hiccup (a garbage
    collection, another process's burst) moves nothing."""
    if rounds < 1 or warmup < 0:
        raise ValueError(f"rounds must be >= 1 and warmup >= 0, got {rounds} and {warmup}")
    times: list[list[float]] = [[] for _ in steps]
    for r in range(warmup + rounds):
        for step, seconds in zip(steps, times, strict=True):
            tic = clock()
            step()
            if r >= warmup:
                seconds.append(clock() - tic)
    return [statistics.median(s) for s in times]


def training_step_seconds(cfgs: Sequence[Config], rounds: int = 20, warmup: int = 3) -> list[float]:
    """Median seconds of one training iteration (next batch + step) of each config, in turns.

    Each config gets its own :class:`Trainer` (data, network, teacher, optimiser), built and then
    stepped on its own training data; nothing is written to the configs' work folders.
    """
    from ladseg.engine.trainer import Trainer  # the trainer imports the whole engine

    trainers = [Trainer(cfg) for cfg in cfgs]
    try:
        batches = [t.training_batches() for t in trainers]
        steps = [_stepper(t, b) for t, b in zip(trainers, batches, strict=True)]
        return interleaved_seconds(steps, rounds, warmup)
    finally:
        for t in trainers:
            t.close()


def _stepper(trainer: Trainer, batches: Iterator[dict[str, Any]]) -> Callable[[], object]:
    return lambda: trainer.train_step(next(batches))

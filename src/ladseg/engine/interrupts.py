"""Ctrl-C and SIGTERM stop a training run at a point it can be saved and resumed from.

A signal that arrives while a batch is read or a step runs is held until the step ends (the
weights, optimiser, iteration and RNG then agree), so the run saves ``last.pth`` at the iteration
it reached; one that arrives between steps (logging, a checkpoint, validation) stops at once, as
nothing there changes the training state. A second signal stops at once in any case, without
saving: ``last.pth`` then keeps the last checkpoint. Handlers are only installed from the main
thread (Python allows no other) and are restored afterwards.
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from types import FrameType, TracebackType
from typing import Any

from ladseg.errors import LadsegError

SIGNALS = (signal.SIGINT, signal.SIGTERM)


class TrainingInterrupted(LadsegError):
    """A run stopped by SIGINT/SIGTERM; ``exit_code`` is the shell's 128 + signal number."""

    def __init__(self, message: str, signum: int) -> None:
        super().__init__(message)
        self.exit_code = 128 + signum


class StopSignals:
    """``with StopSignals(defer_always) as stops:``; ``with stops.deferred():`` around each step.

    ``defer_always`` (multi-process runs) holds every first signal until the end of a step, where
    the ranks agree to stop together (one rank stopping alone would leave the others waiting).
    """

    def __init__(self, defer_always: bool = False) -> None:
        self.signum: int | None = None
        self.defer_always = defer_always
        self.in_step = False
        self.mid_step = False  # the stop came inside a step: its state is not consistent
        self._previous: dict[int, Any] = {}

    @property
    def requested(self) -> bool:
        return self.signum is not None

    @property
    def name(self) -> str:
        return signal.Signals(self.signum).name if self.signum is not None else "no signal"

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        first = self.signum is None
        self.signum = self.signum or signum
        if first and (self.in_step or self.defer_always):
            return  # honoured when the step ends
        self.mid_step = self.in_step
        raise KeyboardInterrupt

    @contextmanager
    def deferred(self) -> Iterator[None]:
        """A region (reading a batch, one step) that a first signal does not cut short."""
        self.in_step = True
        try:
            yield
        finally:
            self.in_step = False

    def __enter__(self) -> StopSignals:
        if threading.current_thread() is threading.main_thread():
            for sig in SIGNALS:
                self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
        self._previous.clear()

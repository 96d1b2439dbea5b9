"""The library's notes to its user (resume points, fallbacks, settings taken from a checkpoint).

They go through ``logging.getLogger("ladseg")`` at INFO, so an API user can silence them
(``logging.getLogger("ladseg").setLevel(logging.WARNING)``) or redirect them (replace the handler).
By default they are printed as plain lines on the current ``sys.stdout``, as the CLI shows them.
"""

from __future__ import annotations

import logging
import sys

LOGGER = logging.getLogger("ladseg")


class _CurrentStdout(logging.StreamHandler):  # type: ignore[type-arg]
    """Writes to whatever ``sys.stdout`` is at the time (a redirected or captured stream included)."""

    def __init__(self) -> None:
        super().__init__()
        self.setFormatter(logging.Formatter("%(message)s"))

    @property  # type: ignore[override]
    def stream(self):  # noqa: ANN201 (the handler's stream protocol)
        return sys.stdout

    @stream.setter
    def stream(self, value: object) -> None:  # the base class assigns it once; ignored
        pass


if not LOGGER.handlers:
    LOGGER.addHandler(_CurrentStdout())
    LOGGER.setLevel(logging.INFO)
    LOGGER.propagate = False


def note(message: str) -> None:
    """Tell the user something they should know but that is not an error."""
    LOGGER.info(message)

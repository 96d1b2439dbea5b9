"""The library's notes to its user (resume points, fallbacks, settings taken from a checkpoint).

They go through ``logging.getLogger("ladseg")`` at INFO, so an API user can silence them
(``logging.getLogger("ladseg").setLevel(logging.WARNING)``) or redirect them (replace the handler).
By default notes are printed as plain lines on the current ``sys.stdout`` and warnings on
``sys.stderr``, as the CLI shows them.
"""

from __future__ import annotations

import logging
import sys

LOGGER = logging.getLogger("ladseg")


class _CurrentStream(logging.StreamHandler):  # type: ignore[type-arg]
    """Writes to whatever ``sys.stdout`` / ``sys.stderr`` is at the time (a captured stream included)."""

    def __init__(self, name: str) -> None:
        self.name_of_stream = name
        super().__init__()
        self.setFormatter(logging.Formatter("%(message)s"))

    @property  # type: ignore[override]
    def stream(self):  # noqa: ANN201 (the handler's stream protocol)
        return getattr(sys, self.name_of_stream)

    @stream.setter
    def stream(self, value: object) -> None:  # the base class assigns it once; ignored
        pass


if not LOGGER.handlers:
    notes = _CurrentStream("stdout")
    notes.addFilter(lambda record: record.levelno < logging.WARNING)
    warnings = _CurrentStream("stderr")
    warnings.setLevel(logging.WARNING)
    LOGGER.addHandler(notes)
    LOGGER.addHandler(warnings)
    LOGGER.setLevel(logging.INFO)
    LOGGER.propagate = False


def note(message: str) -> None:
    """Tell the user something they should know but that is not an error (stdout)."""
    LOGGER.info(message)


def warn(message: str) -> None:
    """Tell the user that something was read or done differently from what they may expect (stderr)."""
    LOGGER.warning(message)

"""Library notes go through the ``ladseg`` logger: shown on stdout by default, silenced or redirected at will."""

from __future__ import annotations

import io
import logging

import pytest

from ladseg.notes import LOGGER, note, warn


def test_a_note_is_a_plain_line_on_the_current_stdout(capsys: pytest.CaptureFixture[str]) -> None:
    note("resumed run/last.pth at iteration 7")
    assert capsys.readouterr().out == "resumed run/last.pth at iteration 7\n"


def test_an_api_user_can_silence_or_redirect_notes(capsys: pytest.CaptureFixture[str]) -> None:
    level, handlers = LOGGER.level, list(LOGGER.handlers)
    try:
        LOGGER.setLevel(logging.WARNING)
        note("hidden")
        assert capsys.readouterr().out == ""
        LOGGER.setLevel(logging.INFO)
        buffer = io.StringIO()
        LOGGER.handlers = [logging.StreamHandler(buffer)]
        note("redirected")
        assert capsys.readouterr().out == "" and buffer.getvalue() == "redirected\n"
    finally:
        LOGGER.setLevel(level)
        LOGGER.handlers = handlers


def test_a_warning_goes_to_the_current_stderr(capsys: pytest.CaptureFixture[str]) -> None:
    warn("warning: image a.gif has 3 frames")
    captured = capsys.readouterr()
    assert (captured.out, captured.err) == ("", "warning: image a.gif has 3 frames\n")

"""Inference settings: one object that travels from the config, the command line or the API to
the evaluator, and the one place where their values are checked.

torch-free, so that the command line lists the choices without loading torch;
:mod:`ladseg.engine.inference` registers one function under each name of :data:`MODES`.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, fields, replace
from typing import Any, TypeVar

from ladseg.errors import ConfigError

#: the inference modes (whole image, sliding window, multi-scale)
MODES = ("whole", "slide", "multiscale")
#: how each scale of multiscale runs
SCALE_MODES = ("whole", "slide")
#: multiscale: mean of softmax probabilities, or of logits (the reference's)
MULTISCALE_AVERAGES = ("probs", "logits")
#: multiscale: scaled sizes rounded, or floored (the reference's)
MULTISCALE_ROUNDINGS = ("round", "floor")
#: the usual multiscale factors (mmsegmentation's and the reference's)
DEFAULT_SCALES = (0.5, 0.75, 1.0, 1.25, 1.5, 1.75)
#: the smallest multiscale factor: below it an image keeps too few pixels to segment (1000 px -> 100)
MIN_SCALE = 0.1

S = TypeVar("S", bound="InferenceSettings")


@dataclass(frozen=True)
class OptionStyle:
    """How an error names an inference option: a config key (``section`` set) or a flag (``--stride``)."""

    section: str | None = None

    def label(self, name: str) -> str:
        return f"config key '{self.section}.{name}'" if self.section else f"--{name.replace('_', '-')}"

    def show(self, value: Any) -> str:
        if self.section or not isinstance(value, (list, tuple)):
            return repr(list(value)) if isinstance(value, tuple) else repr(value)
        return " ".join(f"{v:g}" if isinstance(v, float) else str(v) for v in value)

    def subject(self, name: str, value: Any) -> str:
        """``--stride 20 8`` or ``config key 'eval.stride': [20, 8]``."""
        return f"{self.label(name)}{':' if self.section else ''} {self.show(value)}"


#: how the command line and the Python API name an option
FLAGS = OptionStyle()


@dataclass
class InferenceSettings:
    """One inference mode and its options (see :mod:`ladseg.engine.inference` for what each does)."""

    mode: str = "whole"
    crop_size: list[int] | None = None  # sliding window; needed by slide (and multiscale over slide)
    stride: list[int] | None = None  # None: 2/3 of the window
    scales: list[float] = field(default_factory=lambda: list(DEFAULT_SCALES))  # multiscale
    flip: bool = False  # multiscale: add horizontally flipped inputs
    scale_mode: str = "whole"  # how each scale of multiscale runs
    average: str = "probs"
    rounding: str = "round"

    @property
    def slides(self) -> bool:
        return self.mode == "slide" or (self.mode == "multiscale" and self.scale_mode == "slide")

    # -- building ------------------------------------------------------------------------------
    @classmethod
    def resolve(
        cls,
        saved_eval: Mapping[str, Any] | None = None,
        saved_data: Mapping[str, Any] | None = None,
        **given: Any,
    ) -> InferenceSettings:
        """Options ``given`` (None = not given; ``flip`` adds to the saved one), else a saved ``eval``
        section (a checkpoint's training config; keys other than the settings' are ignored), else the
        defaults; the window defaults to the saved ``data.crop_size``."""
        known = {f.name for f in fields(InferenceSettings)}
        saved = {k: v for k, v in (saved_eval or {}).items() if k in known and v is not None}
        settings = InferenceSettings().updated(**saved).updated(**given)
        return settings.with_window((saved_data or {}).get("crop_size"))

    def updated(self: S, **given: Any) -> S:
        """A copy with the options ``given`` (None = not given; ``flip`` adds to this one's)."""
        changes: dict[str, Any] = {k: v for k, v in given.items() if v is not None and k != "flip"}
        for key, convert in (("crop_size", int), ("stride", int), ("scales", float)):
            if changes.get(key) is not None:
                changes[key] = [convert(v) for v in changes[key]]
        return replace(self, **changes, flip=self.flip or bool(given.get("flip")))

    def with_window(self, window: Sequence[int] | None) -> InferenceSettings:
        """These settings alone (a config's ``eval`` section has more), the window defaulting to
        ``window`` (a config's ``data.crop_size``)."""
        values = {f.name: copy.copy(getattr(self, f.name)) for f in fields(InferenceSettings)}
        if values["crop_size"] is None and window:
            values["crop_size"] = [int(c) for c in window]
        return InferenceSettings(**values)

    # -- checking ------------------------------------------------------------------------------
    def check(self, style: OptionStyle = FLAGS) -> None:
        """Every value in its range (a ConfigError naming the option in ``style``); the stride is
        checked against the window when the window is known."""
        for name, allowed in (
            ("mode", MODES), ("scale_mode", SCALE_MODES),
            ("average", MULTISCALE_AVERAGES), ("rounding", MULTISCALE_ROUNDINGS),
        ):  # fmt: skip
            value = getattr(self, name)
            if value not in allowed:
                raise ConfigError(f"{style.label(name)}: expected one of {', '.join(allowed)}, got {value!r}")
        good = [isinstance(s, (int, float)) and math.isfinite(s) and s >= MIN_SCALE for s in self.scales]
        if not good or not all(good):  # given for another mode too: a bad value is still a mistake
            raise ConfigError(
                f"{style.label('scales')}: expected one or more numbers >= {MIN_SCALE:g}, got "
                f"{style.show(self.scales) or 'none'} (common: {FLAGS.show(list(DEFAULT_SCALES))})"
            )
        for name in ("crop_size", "stride"):
            value = getattr(self, name)
            if value is not None and (len(value) != 2 or min(value) <= 0):
                raise ConfigError(
                    f"{style.label(name)}: expected two positive integers [h, w], got {style.show(value)}"
                )
        if self.crop_size is not None:
            self.check_window(self.crop_size, style)

    def check_window(self, window: Sequence[int], style: OptionStyle = FLAGS) -> None:
        """A stride larger than the window leaves the pixels between two windows without a prediction."""
        if self.stride is not None and any(s > c for s, c in zip(self.stride, window, strict=True)):
            raise ConfigError(
                f"{style.subject('stride', self.stride)} is larger than the sliding window "
                f"{style.show(list(window))}: the pixels between two windows would get no prediction"
            )

    # -- using ---------------------------------------------------------------------------------
    def kwargs(self) -> dict[str, Any]:
        """Keyword arguments of :func:`~ladseg.engine.inference.infer` for this mode, after
        :meth:`check` (a window that cannot work fails here, before any image)."""
        self.check()
        out: dict[str, Any] = {}
        if self.slides:
            if not self.crop_size:
                raise ConfigError(f"{self.mode} inference needs a window: --crop-size H W (crop_size)")
            out.update(crop_size=list(self.crop_size), stride=list(self.stride) if self.stride else None)
        if self.mode == "multiscale":
            out.update(
                scales=list(self.scales), flip=self.flip, scale_mode=self.scale_mode,
                average=self.average, rounding=self.rounding,
            )  # fmt: skip
        return out

    def describe(self) -> str:
        """``whole``, ``multiscale scales=[...] +flip``: how a report names the mode."""
        scales = f" scales={self.scales}" if self.mode == "multiscale" else ""
        return self.mode + scales + (" +flip" if self.flip else "")

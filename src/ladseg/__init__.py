"""ladseg: knowledge distillation for semantic segmentation, built around
Label Assisted Distillation (LAD, Qiu et al. 2024, arXiv 2407.13254).

The Python API (``ladseg.load``, ``ladseg.train``, ``ladseg.evaluate``; see :mod:`ladseg.api`) is
imported on first use, so ``import ladseg`` stays light (no torch until a function is called).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

_API = ("Segmenter", "evaluate", "load", "train")

if TYPE_CHECKING:
    from ladseg.api import Segmenter, evaluate, load, train


def __getattr__(name: str) -> Any:
    if name in _API:
        from ladseg import api

        return getattr(api, name)
    raise AttributeError(f"module 'ladseg' has no attribute {name!r}")


__all__ = ["Segmenter", "__version__", "evaluate", "load", "train"]

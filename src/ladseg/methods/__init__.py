"""Training methods (task modules): supervised, LAD teacher, distillation, KD baselines."""

from ladseg.methods.base import Batch, Method, MethodParams
from ladseg.registry import Registry

METHODS: Registry[type[Method]] = Registry("method")

__all__ = ["METHODS", "Batch", "Method", "MethodParams"]

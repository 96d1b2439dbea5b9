"""The engine: config system, the one trainer, evaluation (metrics, inference modes), checkpoints."""

from ladseg.engine.checkpoint import build_model_from_checkpoint, load_checkpoint, save_checkpoint
from ladseg.engine.config import Config, load_config
from ladseg.engine.evaluation import evaluate
from ladseg.engine.inference import infer
from ladseg.engine.metrics import ConfusionMatrix, SegMetrics

__all__ = [
    "Config",
    "ConfusionMatrix",
    "SegMetrics",
    "build_model_from_checkpoint",
    "evaluate",
    "infer",
    "load_checkpoint",
    "load_config",
    "save_checkpoint",
]

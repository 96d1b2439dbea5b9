"""Segmentation models: backbone / decode head / auxiliary head joined by ``Segmentor``."""

from ladseg.models.backbones import BACKBONES, Backbone
from ladseg.models.builder import MODELS, build_model, list_models
from ladseg.models.heads import HEADS, DecodeHead
from ladseg.models.segmentor import Segmentor, SegOutput, resize_logits

__all__ = [
    "BACKBONES",
    "HEADS",
    "MODELS",
    "Backbone",
    "DecodeHead",
    "SegOutput",
    "Segmentor",
    "build_model",
    "list_models",
    "resize_logits",
]

"""ladseg: knowledge distillation for semantic segmentation, built around
Label Assisted Distillation (LAD, Qiu et al. 2024, arXiv 2407.13254)."""

__version__ = "0.1.0"

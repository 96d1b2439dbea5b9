"""Evaluate a saved checkpoint under a config: the shared core of ``ladseg eval`` and the demo.

The config names the dataset, split and inference mode; the network and its input normalisation
come from the checkpoint. For a method whose network reads more than the image (a LAD teacher
reads label channels), the method's ``inference_input`` builds that input; ``method_params``
overrides its parameters (e.g. ``{"eval_label": "none"}`` to evaluate a teacher without labels).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch.nn import Module

from ladseg.engine import evaluation
from ladseg.engine.backends import default_backend, load_network
from ladseg.engine.builders import build_loader_for, build_split, method_class, resolve_device
from ladseg.engine.checkpoint import build_model_from_checkpoint
from ladseg.engine.config import Config, inference_settings
from ladseg.engine.inputs import input_normalization, label_scales
from ladseg.engine.metrics import SegMetrics
from ladseg.errors import CheckpointError
from ladseg.methods.base import MethodParams
from ladseg.methods.label_encoding import reconcile_encoding
from ladseg.models.convert import image_only_hint
from ladseg.models.segmentor import Segmentor
from ladseg.notes import note


def _declared_label_encoding(params: Any, meta: dict[str, Any], verbose: bool) -> Any:
    """The LAD teacher's label encoding as its checkpoint declares it (:func:`reconcile_encoding`)."""
    encoder, message = reconcile_encoding(
        params.encoder, meta, meta.get("normalize"), label_scales(), "method.encoder"
    )
    if message and verbose:
        note(message)
    return dataclasses.replace(params, encoder=encoder)


def evaluate_checkpoint(
    cfg: Config,
    checkpoint: str | Path,
    split: str | None = None,
    method_params: dict[str, Any] | None = None,
    progress: bool = True,
    verbose: bool = False,
    backend: str | None = None,
) -> tuple[SegMetrics, Any]:
    """Metrics of ``checkpoint`` on ``split`` (default ``data.val_split``); returns (metrics, dataset).

    ``backend`` (:mod:`ladseg.engine.backends`; default torch, onnxruntime for an ``.onnx`` file):
    another backend runs the same data, inference modes and evaluator, so their mIoU compare.
    """
    from ladseg.methods import build_method

    device = resolve_device(cfg.run.device)
    if (backend or default_backend(checkpoint)) != "torch":
        loaded = load_network(checkpoint, backend, device)
        model, meta, device = loaded.network, loaded.meta, loaded.device
    else:
        model, meta = build_model_from_checkpoint(checkpoint)
    normalize = meta.get("normalize") or cfg.data.normalize
    if normalize != cfg.data.normalize:
        if verbose:
            note(
                f"note: using the checkpoint's input normalisation {normalize!r} (config: {cfg.data.normalize!r})"
            )
        cfg.data.normalize = normalize
    dataset = build_split(cfg, split or cfg.data.val_split, train=False)
    if model.num_classes != dataset.num_classes:
        raise CheckpointError(
            f"{checkpoint} predicts {model.num_classes} classes but {cfg.data.dataset!r} has {dataset.num_classes}"
        )
    network, input_fn = model, (lambda batch: batch["image"])
    cls = method_class(cfg.method_name) if isinstance(model, Segmentor) else None
    if cls is None:  # another backend runs an image-only network as it is
        return _evaluate(cfg, network, input_fn, dataset, meta, device, progress), dataset
    if model.in_channels > 3 and not cls.label_input:
        raise CheckpointError(
            f"{checkpoint} reads {model.in_channels} input channels (image + trained label channels: a LAD "
            f"teacher) but method {cfg.method_name!r} feeds the image only; evaluate it with its lad_teacher "
            f"config, or, for {image_only_hint(checkpoint)}"
        )
    if not cls.needs_teacher:  # e.g. a LAD teacher reads label channels too
        params: MethodParams = cls.parse_params({**dataclasses.asdict(cfg.method), **(method_params or {})})
        if cls.label_input:
            params = _declared_label_encoding(params, meta, verbose)
        method = build_method(
            cfg.method_name,
            params,
            model,
            model.num_classes,
            data_normalization=input_normalization(normalize),
        )
        network, input_fn = method.eval_model(), method.inference_input
    return _evaluate(cfg, network, input_fn, dataset, meta, device, progress), dataset


def _evaluate(
    cfg: Config,
    network: Module,
    input_fn: Callable[[dict[str, Any]], Any],
    dataset: Any,
    meta: dict[str, Any],
    device: torch.device,
    progress: bool,
) -> SegMetrics:
    network.to(device)
    return evaluation.evaluate(
        network, build_loader_for(cfg, dataset, train=False), dataset.num_classes, inference_settings(cfg),
        input_fn=input_fn, device=device, progress=progress,
        class_names=list(dataset.classes) or meta.get("class_names"),
    )  # fmt: skip

"""Evaluate a network on a loader: inference mode -> argmax -> one confusion matrix -> metrics.

Metrics: :mod:`ladseg.engine.metrics` (mIoU averages over classes present in the ground truth
or the predictions; absent classes are NaN and excluded). Inference modes:
:mod:`ladseg.engine.inference` (whole, slide, multiscale averaging softmax probabilities, or
logits as the reference does).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import torch
from torch import Tensor, nn
from tqdm import tqdm

from ladseg.engine.dist import is_main_process
from ladseg.engine.inference import (
    INFERENCE_MODES,
    InferenceSettings,
    infer,
    multiscale_inference,
    slide_inference,
    whole_inference,
)
from ladseg.engine.metrics import ConfusionMatrix, SegMetrics
from ladseg.labels import IGNORE_INDEX
from ladseg.models.segmentor import resize_logits

__all__ = [
    "INFERENCE_MODES",
    "ConfusionMatrix",
    "InferenceSettings",
    "SegMetrics",
    "evaluate",
    "infer",
    "move_batch",
    "multiscale_inference",
    "slide_inference",
    "whole_inference",
]


def _image(batch: dict[str, Any]) -> Tensor:
    return batch["image"]


def move_batch(batch: dict[str, Any], device: torch.device, channels_last: bool = False) -> dict[str, Any]:
    """Tensors of a batch to ``device`` (non-blocking); other entries (names) unchanged."""
    out = {}
    for key, value in batch.items():
        if isinstance(value, Tensor):
            value = value.to(device, non_blocking=True)
            if channels_last and value.ndim == 4:
                value = value.contiguous(memory_format=torch.channels_last)
        out[key] = value
    return out


@torch.no_grad()
def evaluate(
    model: nn.Module,
    loader: Iterable[dict[str, Any]],
    num_classes: int,
    settings: InferenceSettings | None = None,
    *,
    input_fn: Callable[[dict[str, Any]], Tensor] = _image,
    device: torch.device | str = "cpu",
    ignore_index: int = IGNORE_INDEX,
    class_names: Sequence[str] | None = None,
    autocast: Callable[[], contextlib.AbstractContextManager] | None = None,
    progress: bool = True,
    max_batches: int | None = None,
) -> SegMetrics:
    """Metrics of ``model`` over ``loader`` with ``settings`` (default: whole image), reduced across
    processes when distributed.

    ``input_fn(batch)`` gives what the network reads (a LAD teacher adds label channels);
    the batch is on ``device`` when it is called. Scores are resized to the mask size when the
    two differ. ``model`` is switched to eval mode and restored afterwards.
    """
    device = torch.device(device)
    was_training = model.training
    model.eval()
    cm = ConfusionMatrix(num_classes, ignore_index, device)
    settings = settings or InferenceSettings()
    kwargs = settings.kwargs()
    ctx = autocast or contextlib.nullcontext
    total = len(loader) if hasattr(loader, "__len__") else None  # type: ignore[arg-type]
    bar = tqdm(
        loader,
        total=total,
        desc=f"eval ({settings.mode})",
        leave=False,
        disable=not (progress and is_main_process()),
    )
    try:
        for i, batch in enumerate(bar):
            if max_batches is not None and i >= max_batches:
                break
            batch = move_batch(batch, device)
            with ctx():
                scores = infer(model, input_fn(batch), settings.mode, **kwargs)
            mask = batch["mask"]
            scores = resize_logits(scores.float(), mask.shape[-2:])
            cm.update(scores.argmax(1), mask)
    finally:
        bar.close()
        model.train(was_training)
    cm.reduce()
    return cm.compute(class_names)

"""The Python API: ``ladseg.load``, ``ladseg.train``, ``ladseg.evaluate``; the CLI is a thin layer on it.

    model = ladseg.load("work_dirs/run/best.pth")       # a ladseg or a reference checkpoint
    classes = model.predict("photo.jpg")                 # H x W class ids at the image's size
    classes, probs = model.predict(array, probabilities=True)

Inference follows the checkpoint's own evaluation settings (mode, window, scales, resize ratio)
unless ``load`` is told otherwise, so a prediction matches what ``ladseg eval`` scored.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

from ladseg.engine import inference
from ladseg.engine.config import Config, config_from_dict, deep_merge, load_config
from ladseg.engine.inference_settings import InferenceSettings
from ladseg.engine.metrics import SegMetrics
from ladseg.errors import CheckpointError, DatasetError
from ladseg.models.segmentor import Segmentor, resize_logits

ImageInput = str | Path | Image.Image | np.ndarray


def as_rgb(image: ImageInput) -> np.ndarray:
    """An RGB uint8 H x W x 3 array from a path, a PIL image or an array (H x W grey or H x W x 3/4)."""
    from ladseg.data.base import read_image, to_rgb8

    if isinstance(image, (str, Path)):
        return _not_empty(read_image(Path(image)))
    if isinstance(image, Image.Image):
        return _not_empty(to_rgb8(image))
    array = np.asarray(image)
    if array.ndim == 2:
        array = np.repeat(array[..., None], 3, axis=2)
    if array.ndim != 3 or array.shape[2] not in (3, 4):
        raise DatasetError(f"expected an H x W x 3 RGB image array, got shape {array.shape}")
    if array.dtype != np.uint8:
        raise DatasetError(f"expected a uint8 image array (0..255), got {array.dtype}")
    return _not_empty(np.ascontiguousarray(array[..., :3]))


def _not_empty(rgb: np.ndarray) -> np.ndarray:
    """An image with no pixels has nothing to segment (the network would fail on it, or say nothing)."""
    if rgb.shape[0] == 0 or rgb.shape[1] == 0:
        raise DatasetError(f"the image is empty ({rgb.shape[1]} x {rgb.shape[0]} pixels): nothing to segment")
    return rgb


class Segmenter:
    """A loaded checkpoint ready to segment images (see :func:`load`).

    ``model`` is the network (a Segmentor, or an ONNX Runtime session behind the same interface),
    ``meta`` the checkpoint's meta (class names, palette, config), ``settings`` the inference mode
    it runs, ``backend`` what runs it, ``class_names`` the names of the predicted ids.
    """

    def __init__(
        self,
        model: Segmentor | torch.nn.Module,
        meta: dict[str, Any],
        settings: InferenceSettings,
        device: torch.device,
        backend: str = "torch",
    ) -> None:
        from ladseg.data.transforms import build_transforms

        self.model = model.to(device).eval()
        self.meta = meta
        self.backend = backend
        self.settings = settings
        self.device = device
        self.kwargs = settings.kwargs()  # a window that cannot work fails here, before any image
        config = meta.get("config") if isinstance(meta.get("config"), dict) else {}
        data = config.get("data") if isinstance(config.get("data"), dict) else {}
        self.resize_ratio = float(data.get("resize_ratio") or 1.0)
        self.normalize = meta.get("normalize") or "imagenet"
        self._transform = build_transforms(False, normalize=self.normalize, resize_ratio=self.resize_ratio)

    @property
    def num_classes(self) -> int:
        return self.model.num_classes

    @property
    def class_names(self) -> list[str]:
        return list(self.meta.get("class_names") or [])

    @torch.no_grad()
    def scores(self, rgb: np.ndarray) -> torch.Tensor:
        """1 x K x H x W scores of an RGB uint8 image, at the image's size (on the model's device)."""
        x = self._transform({"image": rgb})["image"].unsqueeze(0).to(self.device)
        return resize_logits(
            inference.infer(self.model, x, self.settings.mode, **self.kwargs).float(), rgb.shape[:2]
        )

    def predict(
        self, image: ImageInput, probabilities: bool = False
    ) -> np.ndarray | tuple[np.ndarray, np.ndarray]:
        """The class map (H x W, uint8 up to 256 classes, else int64) at the input's size; with
        ``probabilities`` also the K x H x W float32 class probabilities (softmax of the scores)."""
        scores = self.scores(as_rgb(image))
        pred = scores.argmax(1)[0].cpu().numpy().astype(np.uint8 if self.num_classes <= 256 else np.int64)
        if not probabilities:
            return pred
        averaged = self.settings.mode == "multiscale" and self.settings.average == "probs"
        probs = scores[0] if averaged else scores[0].softmax(0)  # multiscale already averages probabilities
        return pred, probs.cpu().numpy().astype(np.float32)


def load(
    checkpoint: str | Path,
    device: str = "auto",
    *,
    mode: str | None = None,
    crop_size: list[int] | None = None,
    stride: list[int] | None = None,
    scales: list[float] | None = None,
    flip: bool = False,
    scale_mode: str | None = None,
    average: str | None = None,
    rounding: str | None = None,
    settings: InferenceSettings | None = None,
    backend: str | None = None,
) -> Segmenter:
    """A :class:`Segmenter` for any ladseg checkpoint, reference (CIRKD/LAD) checkpoint or ``.onnx`` export.

    Inference options: the keywords given, else ``settings``, else the checkpoint's training config
    (``eval`` section; whole image for a reference checkpoint). ``backend``: ``torch`` or ``onnxruntime`` (the checkpoint
    exported once and cached beside it; see :mod:`ladseg.engine.backends`); default torch for a
    checkpoint, onnxruntime for an ``.onnx`` file. A LAD teacher (image + label channels) cannot
    predict from an image alone: that is a CheckpointError.
    """
    from ladseg.engine.backends import load_network
    from ladseg.engine.builders import resolve_device

    loaded = load_network(checkpoint, backend, resolve_device(device))
    model, meta = loaded.network, loaded.meta
    if model.in_channels != 3:
        from ladseg.models.convert import image_only_hint

        raise CheckpointError(
            f"{checkpoint} reads {model.in_channels} input channels (a LAD teacher also reads labels); "
            f"predict needs an image-only model such as a distilled student: {image_only_hint(checkpoint)}"
        )
    config = meta.get("config") if isinstance(meta.get("config"), dict) else {}
    saved_eval = config.get("eval") if isinstance(config.get("eval"), dict) else {}
    saved_data = config.get("data") if isinstance(config.get("data"), dict) else {}
    if settings is not None:  # replaces the saved section; the window still defaults to the saved crop
        saved_eval = dataclasses.asdict(settings.with_window(None))
    chosen = InferenceSettings.resolve(
        saved_eval, saved_data, mode=mode, crop_size=crop_size, stride=stride, scales=scales,
        flip=flip, scale_mode=scale_mode, average=average, rounding=rounding,
    )  # fmt: skip
    return Segmenter(model, meta, chosen, loaded.device, loaded.backend)


def _config(config: str | Path | Config | Mapping[str, Any], overrides: Mapping[str, Any]) -> Config:
    """A checked config from a file, a Config or a mapping, with ``overrides`` on top.

    An override is ``section={"key": value}`` (deep-merged) or ``section__key=value`` (a dotted key).
    """
    dotted = [f"{k.replace('__', '.')}={_yaml_scalar(v)}" for k, v in overrides.items() if "__" in k]
    sections = {k: v for k, v in overrides.items() if "__" not in k}
    if isinstance(config, (str, Path)):
        cfg = load_config(config, dotted)
        if not sections:
            return cfg
        raw = cfg.to_dict()
    else:
        raw = config.to_dict() if isinstance(config, Config) else dict(config)
        if dotted:
            from ladseg.engine.config import apply_overrides

            raw = apply_overrides(raw, dotted)
    return config_from_dict(deep_merge(raw, sections))


def _yaml_scalar(value: Any) -> str:
    import yaml

    return yaml.safe_dump(value, default_flow_style=True).strip().removesuffix("...").strip()


def train(config: str | Path | Config | Mapping[str, Any], **overrides: Any) -> dict[str, Any]:
    """Train one run of any method; returns its summary (best metric, ``work_dir``, ...).

    ``ladseg.train("cfg.yaml", train__iters=100, run={"work_dir": "runs/x"})``: keyword overrides
    as in :func:`_config`. The run folder receives config.yaml, metrics.jsonl, best.pth, last.pth.
    """
    from ladseg.engine.trainer import train as run_training

    return run_training(_config(config, overrides))


def evaluate(
    checkpoint: str | Path,
    config: str | Path | Config | Mapping[str, Any],
    split: str | None = None,
    *,
    progress: bool = False,
    mode: str | None = None,
    crop_size: list[int] | None = None,
    stride: list[int] | None = None,
    scales: list[float] | None = None,
    flip: bool = False,
    scale_mode: str | None = None,
    average: str | None = None,
    rounding: str | None = None,
    settings: InferenceSettings | None = None,
    backend: str | None = None,
    **overrides: Any,
) -> SegMetrics:
    """Metrics (mIoU, per-class IoU/Acc) of ``checkpoint`` (or an ``.onnx`` export) on the config's
    dataset ``split`` (default ``data.val_split``); ``settings``, then the inference keywords given,
    replace the config's ``eval`` section; ``backend`` as in :func:`load`."""
    from ladseg.engine.checkpoint_eval import evaluate_checkpoint

    cfg = _config(config, overrides)
    if settings is not None:  # replaces the section's inference settings (its batch size stays)
        cfg.eval = dataclasses.replace(cfg.eval, **dataclasses.asdict(settings.with_window(None)))
    apply_inference_options(
        cfg, mode=mode, crop_size=crop_size, stride=stride, scales=scales, flip=flip, scale_mode=scale_mode,
        average=average, rounding=rounding,
    )  # fmt: skip
    metrics, _ = evaluate_checkpoint(cfg, checkpoint, split=split, progress=progress, backend=backend)
    return metrics


def apply_inference_options(cfg: Config, **given: Any) -> None:
    """Inference options given (None = not given; ``flip`` adds) replace the config's ``eval``
    settings, checked again as the config's (a stride larger than the window leaves pixels without
    a prediction)."""
    from ladseg.engine.config import check_values

    cfg.eval = cfg.eval.updated(**given)
    cfg.eval.check_config("eval")
    check_values(cfg)


__all__ = ["Segmenter", "apply_inference_options", "as_rgb", "evaluate", "load", "train"]

"""Deployable students: ONNX export of a trained segmentor with dynamic batch and image size.

The exported graph maps an image batch ``N x 3 x H x W`` (normalised as in training; the
normalisation name is stored in the model's metadata) to logits ``N x K x H x W`` at the input
size (:class:`LogitsAtInputSize`), so a deployment only needs an argmax.

Exporter: PyTorch's TorchScript-based exporter (``torch.onnx.export(..., dynamo=False)``). The
dynamo exporter needs the ``onnxscript`` package, which ladseg does not require. That exporter
cannot export ``adaptive_avg_pool2d`` to bins other than 1 when the input size is dynamic (PSPNet's
pyramid pooling), so during export it is replaced by :func:`adaptive_avg_pool2d_matmul`, which
gives the same average pooling as two pooling-matrix products whose size is computed in the graph.
"""

from __future__ import annotations

import contextlib
import json
import os
import warnings
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ladseg.errors import CheckpointError, LadsegError
from ladseg.models.segmentor import Segmentor, resize_logits

DEFAULT_OPSET = 17


class LogitsAtInputSize(nn.Module):
    """``forward(x)`` = the segmentor's main logits up-sampled to the input size (``Segmentor.predict``)."""

    def __init__(self, model: Segmentor) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: Tensor) -> Tensor:
        return resize_logits(self.model(x).logits, x.shape[-2:])


def _pool_matrix(n: int, bins: int, device: torch.device, dtype: torch.dtype) -> Tensor:
    """bins x n averaging matrix of adaptive pooling: bin i spans [floor(i*n/b), ceil((i+1)*n/b)).

    ``n`` comes from ``x.shape``, which the exporter's tracer records as a graph value, so the
    matrix follows the input size at run time.
    """
    pos = torch.arange(n, device=device)
    i = torch.arange(bins, device=device)
    start = torch.div(i * n, bins, rounding_mode="floor")
    end = torch.div((i + 1) * n + bins - 1, bins, rounding_mode="floor")
    inside = (pos[None, :] >= start[:, None]) & (pos[None, :] < end[:, None])
    weights = inside.to(dtype)
    return weights / weights.sum(1, keepdim=True)


def adaptive_avg_pool2d_matmul(x: Tensor, output_size: int | Sequence[int | None]) -> Tensor:
    """``F.adaptive_avg_pool2d`` written as ``P_h @ x @ P_w^T``, exportable with dynamic H and W."""
    if isinstance(output_size, int):
        bh, bw = output_size, output_size
    else:
        bh, bw = output_size
    bh = x.shape[-2] if bh is None else bh
    bw = x.shape[-1] if bw is None else bw
    if (bh, bw) == (1, 1):
        return x.mean((-2, -1), keepdim=True)
    ph = _pool_matrix(x.shape[-2], int(bh), x.device, x.dtype)
    pw = _pool_matrix(x.shape[-1], int(bw), x.device, x.dtype)
    return torch.matmul(torch.matmul(ph, x), pw.t())


@contextlib.contextmanager
def exportable_ops() -> Iterator[None]:
    """Swap in ONNX-friendly versions of ops the TorchScript exporter cannot handle dynamically."""
    original = F.adaptive_avg_pool2d
    F.adaptive_avg_pool2d = adaptive_avg_pool2d_matmul  # type: ignore[assignment]
    try:
        yield
    finally:
        F.adaptive_avg_pool2d = original


def _require(module: str) -> Any:
    try:
        return __import__(module)
    except ImportError as exc:
        raise LadsegError(f"ONNX export needs the '{module}' package (pip install {module})") from exc


@contextlib.contextmanager
def staged_file(path: Path) -> Iterator[Path]:
    """A partial file beside ``path`` that replaces it only when the block ends without an error, so a
    full disk or an interrupt never leaves a truncated model behind (an earlier file stays as it was)."""
    partial = path.with_name(path.name + ".partial")
    try:
        yield partial
        os.replace(partial, path)
    finally:
        partial.unlink(missing_ok=True)


def export_onnx(
    model: Segmentor,
    path: str | Path,
    opset: int = DEFAULT_OPSET,
    size: Sequence[int] = (512, 512),
    metadata: dict[str, Any] | None = None,
) -> Path:
    """Export ``model`` (eval mode, CPU) to ``path``; batch, height and width stay dynamic.

    ``size`` is the example input's H x W used for tracing. The file is checked with
    ``onnx.checker``; ``metadata`` (e.g. normalisation, class names) goes into its metadata props.
    """
    onnx = _require("onnx")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    wrapper = LogitsAtInputSize(model.cpu().eval()).eval()
    example = torch.randn(1, model.in_channels, int(size[0]), int(size[1]))
    axes = {"image": {0: "batch", 2: "height", 3: "width"}, "logits": {0: "batch", 2: "height", 3: "width"}}
    with staged_file(path) as partial:
        with exportable_ops(), torch.no_grad(), warnings.catch_warnings():
            warnings.simplefilter("ignore", torch.jit.TracerWarning)  # shape checks traced as constants
            warnings.simplefilter("ignore", DeprecationWarning)  # the TorchScript exporter is deprecated
            torch.onnx.export(
                wrapper, (example,), str(partial), dynamo=False, opset_version=opset,
                input_names=["image"], output_names=["logits"], dynamic_axes=axes,
            )  # fmt: skip
        proto = onnx.load(str(partial))
        if metadata:
            for key, value in metadata.items():
                entry = proto.metadata_props.add()
                entry.key, entry.value = key, value if isinstance(value, str) else json.dumps(value)
            onnx.save(proto, str(partial))
        onnx.checker.check_model(proto, full_check=True)
    return path


def onnx_max_error(path: str | Path, model: Segmentor, inputs: Sequence[Tensor]) -> float:
    """Largest |onnxruntime - PyTorch| over ``inputs`` (logits at the input size)."""
    ort = _require("onnxruntime")
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    wrapper = LogitsAtInputSize(model.cpu().eval()).eval()
    worst = 0.0
    for x in inputs:
        with torch.no_grad():
            expected = wrapper(x)
        got = torch.from_numpy(session.run(["logits"], {"image": x.numpy()})[0])
        if got.shape != expected.shape:
            raise LadsegError(f"ONNX output shape {tuple(got.shape)} != PyTorch {tuple(expected.shape)}")
        worst = max(worst, float((got - expected).abs().max()))
    return worst


def export_checkpoint(
    checkpoint: str | Path,
    onnx_path: str | Path,
    opset: int = DEFAULT_OPSET,
    size: Sequence[int] = (512, 512),
) -> tuple[Segmentor, dict[str, Any]]:
    """Rebuild the checkpoint's network and export it; returns (model, meta).

    A LAD teacher reads label channels it will not have at deployment, so only image-only
    (3-channel) networks are exported.
    """
    from ladseg.engine.checkpoint import build_model_from_checkpoint

    model, meta = build_model_from_checkpoint(checkpoint)
    if model.in_channels != 3:
        raise CheckpointError(
            f"{checkpoint}: the network reads {model.in_channels} input channels (a label-assisted teacher); "
            "export a 3-channel student instead"
        )
    export_onnx(model, onnx_path, opset, size, metadata=export_metadata(meta))
    return model, meta


def export_metadata(meta: dict[str, Any]) -> dict[str, Any]:
    """What a deployment (and ``ladseg predict`` / ``eval`` on the .onnx file) needs from the checkpoint's
    meta: spec, normalisation, class names, palette, and the evaluation settings of its training run."""
    config = meta.get("config") if isinstance(meta.get("config"), dict) else {}
    saved_eval = config.get("eval") if isinstance(config.get("eval"), dict) else {}
    saved_data = config.get("data") if isinstance(config.get("data"), dict) else {}
    data = {k: saved_data[k] for k in ("resize_ratio", "crop_size") if saved_data.get(k) is not None}
    return {
        "ladseg_spec": {k: v for k, v in dict(meta.get("spec") or {}).items() if k != "pretrained"},
        "normalize": meta.get("normalize") or "imagenet",
        "class_names": meta.get("class_names"),
        "palette": meta.get("palette"),
        "inference": {"eval": saved_eval, "data": data},
        "output": "logits N x K x H x W at the input size; prediction = argmax over K",
    }


__all__ = [
    "DEFAULT_OPSET",
    "LogitsAtInputSize",
    "adaptive_avg_pool2d_matmul",
    "export_checkpoint",
    "export_metadata",
    "export_onnx",
    "exportable_ops",
    "onnx_max_error",
]

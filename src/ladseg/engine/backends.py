"""Inference backends: the network behind ``predict``, ``eval`` and ``ladseg.load``, run by PyTorch or ONNX Runtime.

A backend turns a checkpoint (or an exported ``.onnx`` file) into a :class:`LoadedNetwork` whose
``network(x)`` returns a :class:`~ladseg.models.SegOutput` like a Segmentor, so the inference modes
(whole, slide, multiscale), the pre- and post-processing of :func:`ladseg.load` and the evaluator
are the same code for every backend.

``onnxruntime``: a checkpoint is exported once, to ``<checkpoint>.ort-<key>.onnx`` beside it, where
the key hashes the checkpoint's bytes and the exporter's settings; a changed checkpoint gets a new
file and the stale one is removed (a read-only folder falls back to ``~/.cache/ladseg/onnx``). The
session runs on ONNX Runtime's CPU provider (CUDA's when the device is CUDA and the provider is
installed) with the engine's thread count (:func:`~ladseg.engine.acceleration.inference_threads`).
Its worker threads spin while a ``run`` lasts (ONNX Runtime's default) but stop when it returns
(``session.force_spinning_stop``): left alone they keep spinning after every run and compete with
whatever comes next on the same cores -- PyTorch's pre- and post-processing in ``predict`` and
``eval``, or the next path of ``ladseg bench --inference`` (measured in
``docs/results/camvid_deploy/int8_profile.md``).
The graph returns logits at its input size (:mod:`ladseg.export`), so multi-scale inference over
whole images resamples each scale's logits twice (in the graph, then to the image) where PyTorch
resamples once: the argmax can differ at a few class borders.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from ladseg.engine.acceleration import inference_threads
from ladseg.engine.checkpoint import build_model_from_checkpoint
from ladseg.errors import CheckpointError, LadsegError
from ladseg.models.segmentor import SegOutput
from ladseg.registry import Registry

ONNX_SUFFIX = ".onnx"
CACHE_TAG = "ort"
CACHE_VERSION = "1"  # bump when the exported graph changes, so old cache files are not reused
#: session option: intra-op workers stop spinning when run() returns (they spin during it)
SPINNING_STOP = "session.force_spinning_stop"
#: metadata props of an exported model that hold JSON (the others are plain strings)
JSON_PROPS = ("ladseg_spec", "class_names", "palette", "inference", "quantization")


@dataclass
class LoadedNetwork:
    """A network ready for the inference modes: ``network(x) -> SegOutput``, inputs go to ``device``."""

    network: nn.Module
    meta: dict[str, Any]
    backend: str
    source: Path  # the file that runs: the checkpoint, or the .onnx model
    device: torch.device

    @property
    def num_classes(self) -> int:
        return int(self.network.num_classes)

    @property
    def in_channels(self) -> int:
        return int(self.network.in_channels)


INFERENCE_BACKENDS: Registry[Callable[[Path, torch.device], LoadedNetwork]] = Registry("inference backend")


def is_onnx(path: str | Path) -> bool:
    return Path(path).suffix.lower() == ONNX_SUFFIX


def default_backend(path: str | Path) -> str:
    """An ``.onnx`` file runs on ONNX Runtime, a checkpoint on PyTorch."""
    return "onnxruntime" if is_onnx(path) else "torch"


def load_network(path: str | Path, backend: str | None, device: torch.device) -> LoadedNetwork:
    """The network of ``path`` on the named backend (None: :func:`default_backend`)."""
    name = backend or default_backend(path)
    if name not in INFERENCE_BACKENDS:
        raise LadsegError(f"unknown backend {name!r}; valid: {', '.join(INFERENCE_BACKENDS.names())}")
    return INFERENCE_BACKENDS.build(name, Path(path), device)


@INFERENCE_BACKENDS.register("torch")
def torch_backend(path: Path, device: torch.device) -> LoadedNetwork:
    if is_onnx(path):
        raise CheckpointError(f"{path} is an ONNX model: run it with --backend onnxruntime")
    model, meta = build_model_from_checkpoint(path)
    return LoadedNetwork(model.to(device).eval(), meta, "torch", path, device)


# -- ONNX Runtime ----------------------------------------------------------------------------
def require_onnxruntime() -> Any:
    """The onnxruntime module, or one line saying how to install it."""
    try:
        import onnxruntime
    except ImportError:
        raise LadsegError(
            "the onnxruntime backend needs the 'onnxruntime' package: pip install onnxruntime "
            "(onnxruntime-gpu for CUDA)"
        ) from None
    return onnxruntime


class OnnxNetwork(nn.Module):
    """An ONNX Runtime session behind the Segmentor interface: ``forward(x)`` -> logits at x's size."""

    def __init__(self, session: Any, num_classes: int, in_channels: int = 3) -> None:
        super().__init__()
        self.session = session
        self.num_classes = num_classes
        self.in_channels = in_channels
        self.input_name = session.get_inputs()[0].name
        self.output_name = session.get_outputs()[0].name

    def forward(self, x: Tensor) -> SegOutput:
        array = x.detach().float().cpu().contiguous().numpy()  # NCHW, whatever the memory format
        out = self.session.run([self.output_name], {self.input_name: array})[0]
        logits = torch.from_numpy(out).to(x.device)
        return SegOutput(logits=logits, features=logits)


def cache_key(checkpoint: Path) -> str:
    """16 hex digits of the checkpoint's content and the exporter's settings."""
    from ladseg.export import DEFAULT_OPSET

    digest = hashlib.sha256(f"ladseg-onnx-{CACHE_VERSION}-opset{DEFAULT_OPSET}\n".encode())
    with checkpoint.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()[:16]


def _cache_folder(checkpoint: Path) -> Path:
    """Beside the checkpoint when that folder is writable, else the user's cache folder."""
    if os.access(checkpoint.parent, os.W_OK):
        return checkpoint.parent
    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return base / "ladseg" / "onnx"


def cached_onnx(checkpoint: Path) -> Path:
    """The checkpoint's ONNX graph: reused when its key matches, else exported (stale copies removed)."""
    if not checkpoint.is_file():
        raise CheckpointError(f"checkpoint not found: {checkpoint}")
    folder = _cache_folder(checkpoint)
    target = folder / f"{checkpoint.name}.{CACHE_TAG}-{cache_key(checkpoint)}{ONNX_SUFFIX}"
    if target.is_file():
        return target
    from ladseg.export import export_checkpoint

    for stale in folder.glob(f"{checkpoint.name}.{CACHE_TAG}-*{ONNX_SUFFIX}"):
        stale.unlink(missing_ok=True)
    partial = target.with_name(f"{target.name}.{os.getpid()}.part")
    try:
        export_checkpoint(checkpoint, partial)
        partial.replace(target)  # atomic: another process never reads half a graph
    finally:
        partial.unlink(missing_ok=True)
    return target


def session_for(path: Path, device: torch.device, threads: int | None = None) -> Any:
    """An inference session: CPU provider (CUDA first on a CUDA device when installed), the engine's
    thread count unless ``threads`` is given."""
    ort = require_onnxruntime()
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads or inference_threads()
    options.inter_op_num_threads = 1
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.add_session_config_entry(SPINNING_STOP, "1")  # no busy workers once run() returns
    providers: list[Any] = ["CPUExecutionProvider"]
    if device.type == "cuda" and "CUDAExecutionProvider" in ort.get_available_providers():
        providers.insert(0, ("CUDAExecutionProvider", {"device_id": device.index or 0}))
    try:
        return ort.InferenceSession(str(path), options, providers=providers)
    except Exception as exc:  # noqa: BLE001 - onnxruntime raises its own exception types
        first = (str(exc).strip().splitlines() or [""])[0][:200]
        raise CheckpointError(
            f"{path}: ONNX Runtime cannot load it ({type(exc).__name__}: {first})"
        ) from None


def onnx_meta(session: Any, path: Path) -> dict[str, Any]:
    """The checkpoint-style meta stored in an exported model's metadata (see :func:`ladseg.export.export_checkpoint`)."""
    props = dict(session.get_modelmeta().custom_metadata_map)
    parsed = {k: json.loads(v) if k in JSON_PROPS else v for k, v in props.items()}
    inference = parsed.get("inference") or {}
    return {
        "spec": parsed.get("ladseg_spec") or {},
        "class_names": parsed.get("class_names"),
        "palette": parsed.get("palette"),
        "normalize": parsed.get("normalize") or "imagenet",
        "config": {"eval": inference.get("eval") or {}, "data": inference.get("data") or {}},
        "onnx": {"file": str(path), "quantization": parsed.get("quantization")},
    }


def _num_classes(session: Any, meta: dict[str, Any], path: Path) -> int:
    """From the spec, else the output's static channel count, else the class names."""
    dim = session.get_outputs()[0].shape[1]
    for found in (meta["spec"].get("num_classes"), dim, len(meta["class_names"] or [])):
        if isinstance(found, int) and found > 0:
            return found
    raise CheckpointError(f"{path}: cannot tell how many classes the model predicts (not a ladseg export?)")


@INFERENCE_BACKENDS.register("onnxruntime")
def onnxruntime_backend(path: Path, device: torch.device) -> LoadedNetwork:
    require_onnxruntime()
    if is_onnx(path) and not path.is_file():
        raise CheckpointError(f"ONNX model not found: {path}")
    onnx_path = path if is_onnx(path) else cached_onnx(path)
    session = session_for(onnx_path, device)
    meta = onnx_meta(session, onnx_path)
    channels = session.get_inputs()[0].shape[1]
    if isinstance(channels, int) and channels != 3:
        raise CheckpointError(
            f"{onnx_path} reads {channels} input channels; predict and eval need an image-only model"
        )
    runs_on_cuda = session.get_providers()[0] == "CUDAExecutionProvider"
    network = OnnxNetwork(session, _num_classes(session, meta, onnx_path))
    return LoadedNetwork(
        network, meta, "onnxruntime", onnx_path, device if runs_on_cuda else torch.device("cpu")
    )


__all__ = [
    "INFERENCE_BACKENDS",
    "LoadedNetwork",
    "OnnxNetwork",
    "cache_key",
    "cached_onnx",
    "default_backend",
    "is_onnx",
    "load_network",
    "require_onnxruntime",
    "session_for",
]

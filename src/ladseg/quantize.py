"""int8 students: static QDQ quantization of an exported ONNX model, calibrated on training images.

Why static QDQ with per-channel weights: on CPUs, ONNX Runtime runs QDQ graphs with int8
kernels (its recommended format since 1.11), and per-channel weight scales keep the accuracy of
convolutions whose filters differ in range. Activations are unsigned 8-bit (ONNX Runtime's choice
for x86); on x86 CPUs without VNNI the weights use 7 bits (``reduce_range``) so the int16
accumulation cannot saturate. The activation ranges come from MinMax calibration on a few dozen
training images of the checkpoint's dataset, taken evenly across the split (or from a folder),
transformed exactly as for evaluation; the model's ``quantization`` metadata says which.

The graph is prepared for ONNX Runtime's int8 kernels (``rewrite=True``, the default), because
without it the int8 model spends its time in pools, means and quantize/dequantize nodes that the fp32
graph runs cheaply or not at all, and loses accuracy in the full-size logits (the speed and mIoU of
both graphs: ``docs/results/camvid_deploy/int8_profile.md``):

* ``AveragePool`` (STDC's stride-2 skip) runs as ``QLinearAveragePool``, many times slower than the
  same-shaped depthwise ``QLinearConv``: a 2-D average pool that counts its zero padding is written
  as that depthwise convolution with weights ``1 / (kh * kw)`` (exact in int8: the weight is 127
  with a per-channel scale ``1 / (127 kh kw)``) (:func:`average_pools_as_depthwise_convs`);
* a spatial mean (``ReduceMean`` over H and W: attention and image-pooling branches) has no int8
  kernel and runs in float between a ``DequantizeLinear`` of its whole input and a
  ``QuantizeLinear``; written as ``GlobalAveragePool`` it becomes ``QLinearGlobalAveragePool``
  (:func:`means_as_global_pools`);
* the up-sampling of the logits to the input size (the graph's output) is left in float: quantized,
  it added a ``QuantizeLinear`` and a ``DequantizeLinear`` of the full-size logits and rounded them
  to 256 levels (:func:`output_resizes`, passed as ``nodes_to_exclude``);
* a ``Shape`` node reads the int8 tensor instead of its ``DequantizeLinear``, which ONNX Runtime
  otherwise keeps (duplicated) only to take the shape (:func:`shapes_read_quantized`).

The model's ``quantization`` metadata lists what was rewritten and what stayed in float.
"""

from __future__ import annotations

import json
import tempfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ladseg.data.base import IMAGE_EXTENSIONS
from ladseg.errors import ConfigError, DatasetError, LadsegError
from ladseg.export import staged_file

DEFAULT_CALIBRATION_IMAGES = 32


@dataclass
class Calibration:
    """Normalised 1 x 3 x H x W float32 inputs and how they were chosen (stored in the model)."""

    inputs: list[np.ndarray]
    source: dict[str, Any] = field(default_factory=dict)


def evenly_spaced(total: int, count: int) -> list[int]:
    """``count`` indices spread over ``range(total)`` (all of them when there are fewer)."""
    if total <= count:
        return list(range(total))
    return sorted({int(i) for i in np.linspace(0, total - 1, count).round()})


def calibration_from_split(cfg: Any, split: str, count: int, normalize: str, origin: str) -> Calibration:
    """Images of a config's dataset ``split`` with its evaluation transform (``normalize`` is the checkpoint's)."""
    from ladseg.engine.builders import build_split

    cfg.data.normalize = normalize
    dataset = build_split(cfg, split, train=False)
    picked = evenly_spaced(len(dataset), count)
    if not picked:
        raise DatasetError(f"{cfg.data.dataset}/{split} has no images to calibrate on")
    inputs = [dataset[i]["image"].unsqueeze(0).numpy().astype(np.float32) for i in picked]
    source = {"kind": "dataset split", "config": origin, "dataset": cfg.data.dataset, "split": split,
              "images": len(inputs), "of": len(dataset)}  # fmt: skip
    return Calibration(inputs, source)


def calibration_from_folder(
    folder: Path, count: int, normalize: str, resize_ratio: float = 1.0
) -> Calibration:
    """Images of a folder, read as predict reads them, with the evaluation transform."""
    from ladseg.data.base import read_image
    from ladseg.data.transforms import build_transforms

    if not folder.is_dir():
        raise DatasetError(f"--calib-images {folder}: no such folder")
    files = sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_EXTENSIONS and p.is_file())
    if not files:
        raise DatasetError(f"--calib-images {folder}: no images ({', '.join(IMAGE_EXTENSIONS)})")
    transform = build_transforms(False, normalize=normalize, resize_ratio=resize_ratio)
    chosen = [files[i] for i in evenly_spaced(len(files), count)]
    inputs = [transform({"image": read_image(p)})["image"].unsqueeze(0).numpy() for p in chosen]
    source = {"kind": "folder", "folder": str(folder), "images": len(inputs), "of": len(files)}
    return Calibration([x.astype(np.float32) for x in inputs], source)


def checkpoint_calibration(
    meta: dict[str, Any],
    count: int = DEFAULT_CALIBRATION_IMAGES,
    config: str | Path | None = None,
    split: str | None = None,
    folder: Path | None = None,
) -> Calibration:
    """Calibration images for a checkpoint: a folder, else ``config`` (default: the checkpoint's own
    training config) and ``split`` (default: its train split)."""
    from ladseg.engine.config import config_from_dict, load_config

    normalize = meta.get("normalize") or "imagenet"
    saved = meta.get("config") if isinstance(meta.get("config"), dict) else None
    if folder is not None:
        ratio = float(((saved or {}).get("data") or {}).get("resize_ratio") or 1.0)
        return calibration_from_folder(folder, count, normalize, ratio)
    if config is not None:
        cfg, origin = load_config(config), str(config)
    elif saved is not None:
        try:
            cfg, origin = config_from_dict(saved), "the checkpoint's training config"
        except LadsegError as exc:
            raise ConfigError(
                f"the checkpoint's training config no longer loads ({exc}); give --calib-config or --calib-images"
            ) from None
    else:
        raise ConfigError(
            "this checkpoint has no training config: give --calib-config CFG or --calib-images DIR"
        )
    return calibration_from_split(cfg, split or cfg.data.train_split, count, normalize, origin)


def _cpu_has_vnni() -> bool:
    """x86 VNNI (8-bit dot products that do not saturate); False when it cannot be told."""
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    return "avx512_vnni" in flags or "avx_vnni" in flags or "amx_int8" in flags


class _Reader:
    """onnxruntime's CalibrationDataReader protocol over a list of inputs."""

    def __init__(self, name: str, inputs: Sequence[np.ndarray]) -> None:
        self._items: Iterator[np.ndarray] = iter(inputs)
        self.name = name

    def get_next(self) -> dict[str, np.ndarray] | None:
        item = next(self._items, None)
        return None if item is None else {self.name: item}


def _preprocess(ort_quant: Any, fp32: Path, out: Path) -> Path:
    """ONNX Runtime's recommended pre-processing (shape inference, graph fusion); the input unchanged when it fails."""
    try:
        ort_quant.shape_inference.quant_pre_process(str(fp32), str(out), skip_symbolic_shape=False)
    except Exception:  # noqa: BLE001 - optional: quantization works on the plain graph too
        return fp32
    return out


def _attributes(node: Any) -> dict[str, Any]:
    from onnx import helper

    return {a.name: helper.get_attribute_value(a) for a in node.attribute}


def _static_shapes(model: Any) -> dict[str, list[int | None]]:
    """Tensor name -> dims (None where symbolic), from the model's shape information."""
    shapes = {}
    for info in [*model.graph.value_info, *model.graph.input, *model.graph.output]:
        if info.type.HasField("tensor_type") and info.type.tensor_type.HasField("shape"):
            dims = info.type.tensor_type.shape.dim
            shapes[info.name] = [d.dim_value if d.HasField("dim_value") else None for d in dims]
    return shapes


def _replace_node(model: Any, old: Any, new: Any) -> None:
    nodes = model.graph.node
    index = list(nodes).index(old)
    nodes.remove(old)
    nodes.insert(index, new)


def average_pools_as_depthwise_convs(model: Any) -> list[str]:
    """Replace each 2-D ``AveragePool`` whose average counts the zero padding (or has none) by the
    equal depthwise ``Conv`` with weights ``1 / (kh * kw)``; returns the replaced nodes' names.

    Pools that exclude the padding from the count, use ``ceil_mode``, ``auto_pad`` or dilations, or
    whose channel count is not static, stay as they are.
    """
    import numpy as np
    from onnx import helper, numpy_helper

    shapes = _static_shapes(model)
    replaced = []
    for node in list(model.graph.node):
        if node.op_type != "AveragePool" or node.domain not in ("", "ai.onnx"):
            continue
        a = _attributes(node)
        kernel = list(a.get("kernel_shape", []))
        pads = list(a.get("pads", [0] * 2 * len(kernel)))
        shape = shapes.get(node.input[0]) or []
        channels = shape[1] if len(shape) == 4 else None
        if (
            len(kernel) != 2 or not channels or a.get("ceil_mode", 0) or a.get("auto_pad", b"NOTSET") != b"NOTSET"
            or any(d != 1 for d in a.get("dilations", [1, 1])) or (any(pads) and not a.get("count_include_pad", 0))
        ):  # fmt: skip
            continue
        weight = numpy_helper.from_array(
            np.full((channels, 1, *kernel), 1.0 / (kernel[0] * kernel[1]), dtype=np.float32),
            f"{node.name}.depthwise_weight",
        )
        model.graph.initializer.append(weight)
        conv = helper.make_node(
            "Conv", [node.input[0], weight.name], list(node.output), name=node.name, group=channels,
            kernel_shape=kernel, strides=list(a.get("strides", [1, 1])), pads=pads,
        )  # fmt: skip
        _replace_node(model, node, conv)
        replaced.append(node.name)
    return replaced


def means_as_global_pools(model: Any) -> list[str]:
    """Replace each ``ReduceMean`` over H and W of a 4-D tensor (keepdims) by ``GlobalAveragePool``."""
    from onnx import helper, numpy_helper

    shapes = _static_shapes(model)
    constants = {t.name: numpy_helper.to_array(t) for t in model.graph.initializer}
    replaced = []
    for node in list(model.graph.node):
        if node.op_type != "ReduceMean" or node.domain not in ("", "ai.onnx"):
            continue
        a = _attributes(node)
        axes = a.get("axes")
        if len(node.input) > 1 and node.input[1]:  # opset 18+: axes as an input
            axes = constants[node.input[1]].tolist() if node.input[1] in constants else None
        rank = len(shapes.get(node.input[0]) or [])
        if rank != 4 or axes is None or a.get("keepdims", 1) != 1:
            continue
        if sorted(int(x) % 4 for x in axes) != [2, 3]:
            continue
        pool = helper.make_node("GlobalAveragePool", [node.input[0]], list(node.output), name=node.name)
        _replace_node(model, node, pool)
        replaced.append(node.name)
    return replaced


def output_resizes(model: Any) -> list[str]:
    """Names of the ``Resize`` nodes that produce a graph output (the logits' up-sampling to the input size)."""
    outputs = {o.name for o in model.graph.output}
    return [n.name for n in model.graph.node if n.op_type == "Resize" and set(n.output) & outputs]


def shapes_read_quantized(model: Any) -> int:
    """Let every ``Shape`` of a ``DequantizeLinear`` output read the quantized tensor instead (the same
    shape), then drop the quantize/dequantize nodes nothing reads any more; returns how many Shapes moved."""
    producer = {out: node for node in model.graph.node for out in node.output}
    moved = 0
    for node in model.graph.node:
        source = producer.get(node.input[0]) if node.op_type == "Shape" else None
        if source is not None and source.op_type == "DequantizeLinear":
            node.input[0] = source.input[0]
            moved += 1
    outputs = {o.name for o in model.graph.output}
    while True:
        used = {name for node in model.graph.node for name in node.input} | outputs
        dead = [
            n for n in model.graph.node
            if n.op_type in ("QuantizeLinear", "DequantizeLinear") and not set(n.output) & used
        ]  # fmt: skip
        if not dead:
            break
        for node in dead:
            model.graph.node.remove(node)
    used = {name for node in model.graph.node for name in node.input}
    unused = [t for t in model.graph.initializer if t.name not in used]
    for tensor in unused:
        model.graph.initializer.remove(tensor)
    return moved


def quantize_int8(
    fp32: str | Path, out: str | Path, calibration: Calibration, rewrite: bool = True
) -> dict[str, Any]:
    """Write the int8 QDQ model of ``fp32`` to ``out``; its metadata keeps the fp32 model's and adds
    ``quantization`` (format, types, calibration source, graph changes). Returns that record.

    ``rewrite`` (default): prepare the graph for ONNX Runtime's int8 kernels (module docstring);
    False quantizes the graph as exported.
    """
    import onnx
    from onnxruntime import quantization as q

    fp32, out = Path(fp32), Path(out)
    if not calibration.inputs:
        raise DatasetError("int8 calibration needs at least one image")
    reduce_range = not _cpu_has_vnni()
    record: dict[str, Any] = {
        "format": "QDQ", "weights": "int8 per-channel" + (" (7-bit range)" if reduce_range else ""),
        "activations": "uint8", "calibration_method": "MinMax", "calibration": calibration.source,
    }  # fmt: skip
    source = onnx.load(str(fp32))
    name = source.graph.input[0].name
    out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="ladseg-int8-") as tmp, staged_file(out) as partial:
        prepared = _preprocess(q, fp32, Path(tmp) / "prepared.onnx")
        exclude: list[str] = []
        if rewrite:
            graph = onnx.shape_inference.infer_shapes(onnx.load(str(prepared)))
            pools = average_pools_as_depthwise_convs(graph)
            means = means_as_global_pools(graph)
            exclude = output_resizes(graph)
            prepared = Path(tmp) / "rewritten.onnx"
            onnx.save(graph, str(prepared))
        q.quantize_static(
            str(prepared), str(partial), _Reader(name, calibration.inputs), quant_format=q.QuantFormat.QDQ,
            per_channel=True, reduce_range=reduce_range, activation_type=q.QuantType.QUInt8,
            weight_type=q.QuantType.QInt8, calibrate_method=q.CalibrationMethod.MinMax,
            nodes_to_exclude=exclude, calibration_cache_path=None,
        )  # fmt: skip
        model = onnx.load(str(partial))
        if rewrite:
            record["float_nodes"] = exclude
            record["rewritten"] = {
                "AveragePool as depthwise Conv": pools,
                "ReduceMean as GlobalAveragePool": means,
                "Shape reads the int8 tensor": shapes_read_quantized(model),
            }
        else:
            record["float_nodes"], record["rewritten"] = [], {}
        props = {p.key: p.value for p in source.metadata_props} | {"quantization": json.dumps(record)}
        del model.metadata_props[:]
        for key, value in props.items():
            entry = model.metadata_props.add()
            entry.key, entry.value = key, value
        onnx.save(model, str(partial))
    return record


def prediction_agreement(reference: str | Path, other: str | Path, inputs: Sequence[np.ndarray]) -> float:
    """Share of pixels whose argmax class is the same under two ONNX models (e.g. int8 against fp32)."""
    import onnxruntime as ort

    sessions = [ort.InferenceSession(str(p), providers=["CPUExecutionProvider"]) for p in (reference, other)]
    same = total = 0
    for x in inputs:
        a, b = (s.run(None, {s.get_inputs()[0].name: x})[0].argmax(1) for s in sessions)
        same += int((a == b).sum())
        total += a.size
    return same / max(1, total)


__all__ = [
    "DEFAULT_CALIBRATION_IMAGES",
    "Calibration",
    "calibration_from_folder",
    "calibration_from_split",
    "checkpoint_calibration",
    "average_pools_as_depthwise_convs",
    "evenly_spaced",
    "means_as_global_pools",
    "output_resizes",
    "prediction_agreement",
    "quantize_int8",
    "shapes_read_quantized",
]

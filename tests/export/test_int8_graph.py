"""The int8 export's graph: the rewrites for ONNX Runtime's int8 kernels keep the fp32 function, the
chosen nodes are (or stay un-) quantized, the model agrees with fp32, and its metadata says what changed."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from ladseg.cli import main
from ladseg.export import export_onnx
from ladseg.quantize import (
    Calibration,
    average_pools_as_depthwise_convs,
    means_as_global_pools,
    prediction_agreement,
    quantize_int8,
)

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")
from onnx import TensorProto, helper  # noqa: E402

SIZE = (64, 96)


def stdc1(classes: int = 3) -> torch.nn.Module:
    """A random STDC1-Seg with BatchNorm statistics as after training (decisive, not flat, logits)."""
    from ladseg.models import build_model

    torch.manual_seed(0)
    model = build_model("stdc", "stdc1", classes, aux=False)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.uniform_(-0.2, 0.2)
                m.running_var.uniform_(0.5, 2.0)
    return model.eval()


def inputs(count: int, seed: int, size: tuple[int, int] = SIZE) -> list[np.ndarray]:
    gen = np.random.default_rng(seed)
    return [gen.standard_normal((1, 3, *size)).astype(np.float32) for _ in range(count)]


def run(model: Path | bytes, x: np.ndarray) -> np.ndarray:
    session = ort.InferenceSession(
        str(model) if isinstance(model, Path) else model, providers=["CPUExecutionProvider"]
    )
    return session.run(None, {session.get_inputs()[0].name: x})[0]


def producers(proto) -> dict:  # noqa: ANN001
    return {out: node for node in proto.graph.node for out in node.output}


@pytest.fixture(scope="module")
def stdc_models(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, Path]:
    where = tmp_path_factory.mktemp("int8graph")
    fp32 = export_onnx(stdc1(), where / "fp32.onnx", size=SIZE)
    calibration = Calibration(inputs(4, seed=0), {"kind": "noise", "images": 4})
    quantize_int8(fp32, where / "int8.onnx", calibration)
    quantize_int8(fp32, where / "plain.onnx", calibration, rewrite=False)
    return fp32, where / "int8.onnx", where / "plain.onnx"


def test_rewrites_keep_the_fp32_function(stdc_models: tuple[Path, Path, Path]) -> None:
    fp32 = stdc_models[0]
    model = onnx.shape_inference.infer_shapes(onnx.load(str(fp32)))
    assert len(average_pools_as_depthwise_convs(model)) == 3  # STDC1's three stride-2 skips
    assert len(means_as_global_pools(model)) == 4  # global context, two ARMs, the FFM
    ops = {n.op_type for n in model.graph.node}
    assert "AveragePool" not in ops and "ReduceMean" not in ops and "GlobalAveragePool" in ops
    onnx.checker.check_model(model, full_check=True)
    for x in inputs(2, seed=5, size=(72, 104)):  # another size: the graph stays dynamic
        expected = run(fp32, x)
        np.testing.assert_allclose(run(model.SerializeToString(), x), expected, rtol=1e-4, atol=1e-4)


def test_pools_that_do_not_count_the_padding_stay() -> None:
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4, 8, 8])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, None)
    m = helper.make_tensor_value_info("m", TensorProto.FLOAT, None)
    nodes = [
        helper.make_node("AveragePool", ["x"], ["y"], kernel_shape=[3, 3], pads=[1, 1, 1, 1], strides=[2, 2]),
        helper.make_node("ReduceMean", ["x"], ["m"], axes=[1], keepdims=1),  # over channels: no pool
    ]  # fmt: skip
    model = helper.make_model(
        helper.make_graph(nodes, "g", [x], [y, m]), opset_imports=[helper.make_opsetid("", 17)]
    )
    model = onnx.shape_inference.infer_shapes(model)
    assert average_pools_as_depthwise_convs(model) == [] and means_as_global_pools(model) == []


def test_int8_graph_quantizes_the_pools_and_keeps_the_output_resize_in_float(
    stdc_models: tuple[Path, Path, Path], tmp_path: Path
) -> None:
    _, int8, plain = stdc_models
    proto = onnx.load(str(int8))
    made = producers(proto)
    ops = [n.op_type for n in proto.graph.node]
    assert "AveragePool" not in ops and "ReduceMean" not in ops
    # the pools' replacements read and write int8 (DequantizeLinear in, QuantizeLinear out)
    pools = [
        n for n in proto.graph.node if n.op_type == "GlobalAveragePool" or n.name.endswith("AveragePool")
    ]
    assert len(pools) == 7
    consumers = {name for n in proto.graph.node if n.op_type == "QuantizeLinear" for name in n.input}
    for node in pools:
        assert made[node.input[0]].op_type == "DequantizeLinear" and node.output[0] in consumers
    # the output up-sampling: float, straight to the graph output, no Q/DQ of the full-size logits
    (resize,) = [n for n in proto.graph.node if n.output[0] == "logits"]
    assert resize.op_type == "Resize" and made[resize.input[0]].op_type == "DequantizeLinear"
    # no Shape reads a DequantizeLinear (ONNX Runtime would keep it only for the shape)
    shapes = [n for n in proto.graph.node if n.op_type == "Shape"]
    assert shapes and all(
        n.input[0] not in made or made[n.input[0]].op_type != "DequantizeLinear" for n in shapes
    )

    record = json.loads({p.key: p.value for p in proto.metadata_props}["quantization"])
    assert record["float_nodes"] == [resize.name]
    assert len(record["rewritten"]["AveragePool as depthwise Conv"]) == 3
    assert len(record["rewritten"]["ReduceMean as GlobalAveragePool"]) == 4
    assert record["rewritten"]["Shape reads the int8 tensor"] == len(shapes)

    # ONNX Runtime fuses them into int8 kernels: no float pools or means, one QuantizeLinear (the image)
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.optimized_model_filepath = str(tmp_path / "optimized.onnx")
    ort.InferenceSession(str(int8), options, providers=["CPUExecutionProvider"])
    optimized = [n.op_type for n in onnx.load(str(tmp_path / "optimized.onnx")).graph.node]
    assert optimized.count("QLinearGlobalAveragePool") == 4 and optimized.count("QuantizeLinear") == 1
    assert not {"ReduceMean", "AveragePool", "QLinearAveragePool"} & set(optimized)

    old = onnx.load(str(plain))
    assert "AveragePool" in {n.op_type for n in old.graph.node}
    old_record = json.loads({p.key: p.value for p in old.metadata_props}["quantization"])
    assert old_record["float_nodes"] == [] and old_record["rewritten"] == {}


def test_int8_agrees_with_fp32(stdc_models: tuple[Path, Path, Path]) -> None:
    fp32, int8, plain = stdc_models
    held_out = inputs(3, seed=7)
    agree = prediction_agreement(fp32, int8, held_out)
    assert agree >= 0.95
    assert agree >= prediction_agreement(fp32, plain, held_out) - 0.01


def test_plain_int8_needs_int8(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["export", "x.pth", "--onnx", "x.onnx", "--plain-int8"]) == 2
    assert "add --int8" in capsys.readouterr().err

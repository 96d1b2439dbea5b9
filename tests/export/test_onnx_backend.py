"""ONNX Runtime behind ``ladseg.load``, predict and eval: agreement with PyTorch, the export cache,
int8 export and its calibration record, and one-line refusals."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from tiny_data import make_folder_dataset, random_checkpoint, tiny_config, tiny_config_dict

import ladseg
from ladseg.cli import main
from ladseg.engine import backends
from ladseg.errors import CheckpointError, LadsegError

onnx = pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")


def image(h: int = 70, w: int = 90, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


def cache_files(checkpoint: Path) -> list[Path]:
    return sorted(checkpoint.parent.glob(f"{checkpoint.name}.ort-*.onnx"))


@pytest.mark.parametrize(
    ("mode", "options", "least"),
    [("whole", {}, 0.999), ("slide", {"crop_size": [48, 48]}, 0.999),
     ("multiscale", {"scales": [0.75, 1.0, 1.25], "flip": True}, 0.99)],
)  # fmt: skip
def test_onnxruntime_predicts_as_torch(tmp_path: Path, mode: str, options: dict, least: float) -> None:
    ckpt = random_checkpoint(tmp_path / "s.pth")
    eager = ladseg.load(ckpt, "cpu", mode=mode, **options)
    ort = ladseg.load(ckpt, "cpu", mode=mode, backend="onnxruntime", **options)
    assert ort.backend == "onnxruntime" and ort.class_names == ["a", "b", "c"] and ort.num_classes == 3
    rgb = image()
    a, b = eager.predict(rgb), ort.predict(rgb)
    assert a.shape == b.shape == (70, 90)
    assert (a == b).mean() >= least  # multiscale: the graph's logits are resampled once more
    _, probs = ort.predict(rgb, probabilities=True)
    np.testing.assert_allclose(probs.sum(0), 1.0, atol=1e-5)


def test_export_cache_is_reused_and_follows_the_checkpoint(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import ladseg.export

    exports: list[Path] = []
    original = ladseg.export.export_checkpoint
    monkeypatch.setattr(
        ladseg.export, "export_checkpoint", lambda c, p, *a: exports.append(p) or original(c, p)
    )
    ckpt = random_checkpoint(tmp_path / "s.pth", seed=0)
    first = ladseg.load(ckpt, "cpu", backend="onnxruntime").predict(image())
    (cached,) = cache_files(ckpt)
    ladseg.load(ckpt, "cpu", backend="onnxruntime")
    assert len(exports) == 1 and cache_files(ckpt) == [cached]  # reused, not exported again

    random_checkpoint(ckpt, seed=1)  # new weights under the same name
    second = ladseg.load(ckpt, "cpu", backend="onnxruntime").predict(image())
    (renewed,) = cache_files(ckpt)
    assert len(exports) == 2 and renewed != cached and not cached.exists()  # stale graph removed
    assert np.array_equal(second, ladseg.load(ckpt, "cpu").predict(image()))
    assert not np.array_equal(first, second)


def test_refusals_are_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    ckpt = random_checkpoint(tmp_path / "s.pth")
    teacher = random_checkpoint(tmp_path / "teacher.pth", in_channels=4)
    fp32 = tmp_path / "s.onnx"
    assert main(["export", str(ckpt), "--onnx", str(fp32), "--size", "64", "64", "--no-verify"]) == 0
    capsys.readouterr()
    cases = [
        (["--checkpoint", str(fp32), "--backend", "torch"], "is an ONNX model: run it with --backend onnxruntime"),
        (["--checkpoint", str(ckpt), "--backend", "tensorrt"], "unknown backend 'tensorrt'; valid: onnxruntime, torch"),
        (["--checkpoint", str(teacher), "--backend", "onnxruntime"], "reads 4 input channels"),
        (["--checkpoint", str(tmp_path / "gone.onnx")], "ONNX model not found"),
    ]  # fmt: skip
    for extra, message in cases:
        argv = ["predict", "--input", str(ckpt), "--output", str(tmp_path / "out"), *extra]
        assert main(argv) == 2
        err = capsys.readouterr().err.strip()
        assert message in err and len(err.splitlines()) == 1, err


def test_missing_onnxruntime_says_how_to_install(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    ckpt = random_checkpoint(tmp_path / "s.pth")
    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # import onnxruntime -> ImportError
    with pytest.raises(LadsegError, match="pip install onnxruntime"):
        ladseg.load(ckpt, "cpu", backend="onnxruntime")
    Path(tmp_path / "x.png").write_bytes(b"")
    argv = ["predict", "--checkpoint", str(ckpt), "--input", str(tmp_path), "--output", str(tmp_path / "o"),
            "--backend", "onnxruntime"]  # fmt: skip
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "pip install onnxruntime" in err
    assert not cache_files(ckpt)


def test_onnx_input_channels_are_checked(tmp_path: Path) -> None:
    with pytest.raises(CheckpointError, match="reads 4 input channels"):
        ladseg.load(random_checkpoint(tmp_path / "t.pth", in_channels=4), "cpu", backend="onnxruntime")
    assert (
        backends.default_backend("a/b.ONNX") == "onnxruntime" and backends.default_backend("b.pth") == "torch"
    )


# -- a tiny trained student: int8 export, eval and predict on .onnx files --------------------------
@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """FCN-R18 trained 30 steps on the tiny colour-coded dataset (48 px); returns (checkpoint, data root)."""
    where = tmp_path_factory.mktemp("int8")
    root = make_folder_dataset(where / "data", n_train=8, n_val=4, size=48)
    cfg = tiny_config(
        root, where / "run", data={"crop_size": [48, 48]}, optim={"lr": 0.05},
        train={"iters": 30, "val_interval": 30, "log_interval": 10, "checkpoint_interval": 30},
    )  # fmt: skip
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        ladseg.train(cfg)
    finally:
        torch.set_num_threads(before)
    return where / "run" / "last.pth", root


def test_int8_export_records_its_calibration_and_agrees_with_fp32(
    trained: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import json

    ckpt, root = trained
    fp32, int8 = tmp_path / "s.onnx", tmp_path / "s.int8.onnx"
    assert main(["export", str(ckpt), "--onnx", str(fp32), "--size", "48", "48"]) == 0
    argv = ["export", str(ckpt), "--onnx", str(int8), "--int8", "--size", "48", "48", "--calib-count", "6"]
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert "calibrated on 6 images of folder/train" in out and "int8 vs fp32:" in out
    assert "kept in float: /Resize;" in out  # the logits' up-sampling to the input size

    proto = onnx.load(str(int8))
    ops = {n.op_type for n in proto.graph.node}
    assert {"QuantizeLinear", "DequantizeLinear"} <= ops
    props = {p.key: p.value for p in proto.metadata_props}
    record = json.loads(props["quantization"])
    assert record["format"] == "QDQ" and record["weights"].startswith("int8 per-channel")
    assert record["float_nodes"] == ["/Resize"] and "Shape reads the int8 tensor" in record["rewritten"]
    assert record["calibration"] == {
        "kind": "dataset split", "config": "the checkpoint's training config", "dataset": "folder",
        "split": "train", "images": 6, "of": 8,
    }  # fmt: skip
    assert props["normalize"] == "imagenet" and json.loads(props["class_names"])[1] == "red"

    fp32_model, int8_model = ladseg.load(fp32, "cpu"), ladseg.load(int8, "cpu")
    assert int8_model.meta["onnx"]["quantization"]["calibration"]["images"] == 6
    val = sorted((root / "images" / "val").glob("*.png"))
    agree = np.mean([(fp32_model.predict(p) == int8_model.predict(p)).mean() for p in val])
    assert agree >= 0.95


def test_int8_calibrates_on_a_folder(trained: tuple[Path, Path], tmp_path: Path) -> None:
    ckpt, root = trained
    int8 = tmp_path / "f.int8.onnx"
    argv = ["export", str(ckpt), "--onnx", str(int8), "--int8", "--calib-images", str(root / "images" / "val"),
            "--size", "48", "48", "--no-verify"]  # fmt: skip
    assert main(argv) == 0
    props = {p.key: p.value for p in onnx.load(str(int8)).metadata_props}
    assert '"kind": "folder"' in props["quantization"] and '"images": 4' in props["quantization"]
    assert main(["export", str(ckpt), "--onnx", str(int8), "--calib-count", "3"]) == 0  # fp32: no calibration
    assert main(["export", str(ckpt), "--onnx", str(int8), "--calib-split", "val"]) == 2  # needs --int8


def test_eval_and_predict_accept_onnx_files(
    trained: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import json

    import yaml

    ckpt, root = trained
    fp32 = tmp_path / "s.onnx"
    assert main(["export", str(ckpt), "--onnx", str(fp32), "--size", "48", "48", "--no-verify"]) == 0
    config = tmp_path / "cfg.yaml"
    config.write_text(yaml.safe_dump(tiny_config_dict(root, tmp_path / "w", data={"crop_size": [48, 48]})))
    scores = {}
    for name, extra in {"torch": ["--checkpoint", str(ckpt)], "onnx": ["--checkpoint", str(fp32)],
                        "cached": ["--checkpoint", str(ckpt), "--backend", "onnxruntime"]}.items():  # fmt: skip
        out = tmp_path / f"{name}.json"
        assert main(["eval", str(config), *extra, "--json", str(out)]) == 0
        scores[name] = json.loads(out.read_text())["mIoU"]
    assert scores["onnx"] == pytest.approx(scores["torch"], abs=1e-3) == scores["cached"]

    assert main(["predict", "--checkpoint", str(fp32), "--input", str(root / "images" / "val"),
                 "--output", str(tmp_path / "masks")]) == 0  # fmt: skip
    assert "backend onnxruntime" in capsys.readouterr().out
    assert len(list((tmp_path / "masks").glob("*_overlay.jpg"))) == 4


def test_sessions_stop_spinning_when_a_run_returns(tmp_path: Path) -> None:
    """A spinning worker left behind by one session burns a core while the next one (or PyTorch) runs."""
    from onnx import TensorProto, helper

    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 3])
    graph = helper.make_graph([helper.make_node("Relu", ["x"], ["y"])], "g", [x], [y])
    path = tmp_path / "relu.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(path))
    session = backends.session_for(path, torch.device("cpu"), threads=2)
    assert session.get_session_options().get_session_config_entry(backends.SPINNING_STOP) == "1"
    assert session.run(None, {"x": np.array([[-1.0, 0.0, 2.0]], np.float32)})[0].tolist() == [[0.0, 0.0, 2.0]]

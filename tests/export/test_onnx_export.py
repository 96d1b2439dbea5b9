"""ONNX export: onnxruntime matches PyTorch at two input sizes; CLI and bad checkpoints."""

from __future__ import annotations

import errno
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from tiny_data import random_checkpoint

from ladseg.cli import main
from ladseg.errors import CheckpointError
from ladseg.export import adaptive_avg_pool2d_matmul, export_checkpoint, onnx_max_error

onnx = pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")


@pytest.mark.parametrize("bins", [1, 2, 3, 6, (2, 5)])
def test_matmul_pooling_equals_adaptive_pooling(bins: int | tuple[int, int]) -> None:
    x = torch.randn(2, 4, 9, 13)  # sizes the bins do not divide: overlapping bins
    torch.testing.assert_close(adaptive_avg_pool2d_matmul(x, bins), F.adaptive_avg_pool2d(x, bins))


@pytest.mark.parametrize("name", ["pspnet", "deeplabv3"])
def test_onnxruntime_matches_pytorch_at_two_sizes(tmp_path: Path, name: str) -> None:
    ckpt = random_checkpoint(tmp_path / "s.pth", name)
    out = tmp_path / f"{name}.onnx"
    model, meta = export_checkpoint(ckpt, out, size=(64, 64))
    proto = onnx.load(str(out))
    onnx.checker.check_model(proto)
    dims = [d.dim_param or d.dim_value for d in proto.graph.input[0].type.tensor_type.shape.dim]
    assert dims == ["batch", 3, "height", "width"]
    props = {p.key: p.value for p in proto.metadata_props}
    assert props["normalize"] == "imagenet" and '"a"' in props["class_names"]
    gen = torch.Generator().manual_seed(1)
    inputs = [torch.randn(1, 3, 64, 64, generator=gen), torch.randn(2, 3, 72, 104, generator=gen)]
    with torch.no_grad():
        scale = max(float(model.predict(x).abs().max()) for x in inputs)
    assert onnx_max_error(out, model, inputs) <= 1e-4 * max(1.0, scale)


def test_cli_export_and_bad_checkpoints(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    ckpt = random_checkpoint(tmp_path / "s.pth", "fcn")
    out = tmp_path / "fcn.onnx"
    assert main(["export", str(ckpt), "--onnx", str(out), "--size", "48", "64"]) == 0
    assert out.is_file() and "max |diff|" in capsys.readouterr().out
    assert main(["export", str(tmp_path / "missing.pth"), "--onnx", str(out)]) == 2
    assert "checkpoint not found" in capsys.readouterr().err
    (tmp_path / "junk.pth").write_bytes(b"not a checkpoint")
    assert main(["export", str(tmp_path / "junk.pth"), "--onnx", str(out)]) == 2
    assert "junk.pth" in capsys.readouterr().err
    teacher = random_checkpoint(tmp_path / "t.pth", "fcn", in_channels=4)
    with pytest.raises(CheckpointError, match="4 input channels"):
        export_checkpoint(teacher, tmp_path / "t.onnx", size=(64, 64))


def test_a_full_disk_during_export_leaves_the_earlier_file_and_no_partial_one(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    ckpt = random_checkpoint(tmp_path / "s.pth", "fcn")
    out = tmp_path / "s.onnx"
    out.write_bytes(b"an earlier export")

    def full_disk(model, args, f, **kwargs) -> None:  # writes part of the file, then the disk is full
        Path(f).write_bytes(b"\x08\x07 truncated")
        raise OSError(errno.ENOSPC, "No space left on device", str(f))

    monkeypatch.setattr(torch.onnx, "export", full_disk)
    assert main(["export", str(ckpt), "--onnx", str(out), "--size", "48", "64"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "no space left" in err[0].lower(), err
    assert out.read_bytes() == b"an earlier export"
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith("s.onnx")] == ["s.onnx"]

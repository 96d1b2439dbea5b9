"""The speed benchmark runs end to end at a tiny size and reports every figure it promises."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from ladseg.bench import main, reference_loop_encode, synthetic_batch
from ladseg.cli import build_parser


def test_reference_loop_gives_one_code_per_image_and_class() -> None:
    mask = synthetic_batch(2, 64, 5, torch.device("cpu"))["mask"]
    codes = reference_loop_encode(mask, 5, noise=0.0)[:, 0]
    for n in range(2):
        for c in mask[n].unique().tolist():
            values = codes[n][mask[n] == c]
            assert torch.all(values == values[0])  # constant inside a class region
    assert not torch.equal(codes[0][mask[0] == 255][:1], codes[1][mask[1] == 255][:1])  # drawn per image


def test_bench_tiny_run_writes_json(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "bench.json"
    argv = ["--models", "deeplabv3", "--batch", "2", "--crop", "32", "--iters", "1", "--warmup", "0",
            "--classes", "3", "--encoder-batch", "2", "--encoder-size", "32", "--eval-scales", "1.0",
            "--device", "cpu", "--json", str(out)]  # fmt: skip
    assert main(argv) == 0
    table = capsys.readouterr().out
    assert "| deeplabv3 | baseline | lad_teacher |" in table and "multiscale+flip" in table
    report = json.loads(out.read_text())
    steps = {r["step"]: r for r in report["steps"]}
    assert set(steps) == {"supervised", "lad_teacher", "distill"}
    assert all(
        r["images_per_s"] > 0 and r["error"] is None and r["peak_mib"] is not None for r in steps.values()
    )
    ratio = report["ratios"][0]
    assert ratio["teacher/supervised"] == pytest.approx(
        steps["lad_teacher"]["ms"] / steps["supervised"]["ms"]
    )
    assert report["encoder"]["loop_ms"] > 0 and report["encoder"]["vectorised_ms"] > 0
    assert "share_of_teacher_step_%_deeplabv3" in report["encoder"]
    assert [r["mode"] for r in report["evaluation"]] == ["whole", "slide", "multiscale+flip"]


def test_bench_times_the_engine_defaults_against_the_eager_step(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    out = tmp_path / "bench.json"
    argv = ["--models", "deeplabv3", "--batch", "2", "--crop", "32", "--iters", "1", "--warmup", "0",
            "--classes", "3", "--encoder-batch", "2", "--encoder-size", "32", "--skip-eval",
            "--device", "cpu", "--defaults", "--json", str(out)]  # fmt: skip
    assert main(argv) == 0
    assert "| x eager |" in capsys.readouterr().out
    rows = json.loads(out.read_text())["steps"]
    assert {r["variant"] for r in rows} == {"baseline", "defaults (channels_last)"}
    for r in rows:
        assert r["error"] is None and r["first_ms"] > 0 and r["compile_s"] is None  # the CPU never compiles
        base = next(b for b in rows if b["variant"] == "baseline" and b["step"] == r["step"])
        assert r["speedup"] == pytest.approx(base["ms"] / r["ms"])


def test_bench_variants_combine_the_flags_and_name_the_defaults(monkeypatch: pytest.MonkeyPatch) -> None:
    from ladseg.bench import select_variants
    from ladseg.engine import amp

    cpu = torch.device("cpu")
    args = build_parser().parse_args(["bench", "--channels-last", "--amp", "--compile", "--defaults"])
    got = {v.name: (v.channels_last, v.amp, v.compile) for v in select_variants(args, cpu)}
    assert got == {
        "baseline": (False, False, False), "defaults (channels_last)": (True, False, False),
        "amp": (False, True, False), "compile": (False, False, True), "channels_last+amp": (True, True, False),
        "channels_last+compile": (True, False, True), "channels_last+amp+compile": (True, True, True),
    }  # fmt: skip
    monkeypatch.setattr(amp, "resolve_amp_mode", lambda mode, device: "bf16")  # e.g. a CUDA device's auto
    names = [v.name for v in select_variants(args, cpu)]
    assert "defaults (channels_last+amp)" in names and "channels_last" in names


def test_cli_has_bench_and_export() -> None:
    args = build_parser().parse_args(["bench", "--crop", "64", "--amp"])
    assert args.crop == 64 and args.amp and args.models is None  # run() fills in deeplabv3 pspnet
    args = build_parser().parse_args(["export", "x.pth", "--onnx", "x.onnx", "--size", "64", "96"])
    assert args.size == [64, 96] and args.opset == 17


def _tiny_inference_bench(tmp_path: Path, *more: str) -> list[dict]:
    """``bench --inference`` on STDC1 at 64x64 (one round, 3 classes) with ``more`` flags: its JSON rows."""
    pytest.importorskip("onnxruntime")
    out = tmp_path / "inference.json"
    argv = ["--inference", "--models", "stdc:stdc1", "--sizes", "64x64", "--iters", "1", "--warmup", "0",
            "--classes", "3", *more, "--json", str(out)]  # fmt: skip
    assert main(argv) == 0
    return json.loads(out.read_text())["inference"]


def test_inference_bench_times_every_path_on_one_tiny_model(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    rows = _tiny_inference_bench(tmp_path)
    table = capsys.readouterr().out
    assert "| model | input | path | ms/image | images/s | x best torch |" in table
    assert [r["path"] for r in rows] == ["torch", "channels_last", "onnxruntime", "int8"]
    assert all(r["error"] is None and r["ms"] > 0 and r["size"] == [64, 64] for r in rows)
    best = min(r["ms"] for r in rows[:2])
    for r in rows:
        assert r["x_best_torch"] == pytest.approx(best / r["ms"])
    assert main(["--inference", "--sizes", "64by64"]) == 2
    assert "--sizes '64by64': write H x W as e.g. 360x480" in capsys.readouterr().out


def test_inference_bench_times_the_plain_int8_graph_on_request(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    rows = _tiny_inference_bench(tmp_path, "--paths", "int8", "int8_plain")
    assert [r["path"] for r in rows] == ["int8", "int8_plain"]
    assert all(r["error"] is None and r["ms"] > 0 and r["x_best_torch"] is None for r in rows)
    assert "| stdc:stdc1 | 64x64 | int8_plain |" in capsys.readouterr().out

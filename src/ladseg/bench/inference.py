"""Deployment benchmark (``ladseg bench --inference``): a student's inference on the CPU, path by path.

For each model and input size, batch 1 on the CPU, four ways to run the same network:
PyTorch eager NCHW (``torch``), PyTorch ``channels_last``, ONNX Runtime fp32 (``onnxruntime``) and
ONNX Runtime int8 (``int8``: static QDQ, per-channel weights, :mod:`ladseg.quantize`); on request
(``--paths``) a fifth, ``int8_plain``: the int8 model without the graph rewrites for ONNX Runtime's
int8 kernels (``ladseg export --int8 --plain-int8``), to time what they change. Every path
computes the same thing, logits up-sampled to the input size (the exported graph's output), with
the same number of threads (the engine's rule, :func:`~ladseg.engine.acceleration.set_threads`).

The paths are timed round-robin (one image each per round) after warm-up rounds, so they share the
machine's load and their ratios come from one run; the median round is reported with images/s and
``x best torch``: the faster PyTorch path's time over this path's. Random weights by default (speed
does not depend on them; int8 calibrates on noise images then); ``--checkpoints`` times trained
students instead, calibrated on their own training images.
"""

from __future__ import annotations

import argparse
import copy
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ladseg.errors import ConfigError

DEFAULT_MODELS = (
    "stdc:stdc1", "stdc:stdc2", "deeplabv3:resnet18", "pspnet:resnet18", "deeplabv3:efficientnet_lite0",
)  # fmt: skip
DEFAULT_SIZES = ("360x480", "512x1024")
PATHS = ("torch", "channels_last", "onnxruntime", "int8")
EXTRA_PATHS = ("int8_plain",)  # only when --paths names it
TORCH_PATHS = ("torch", "channels_last")
NOISE_CALIBRATION = 8


@dataclass
class InferenceRow:
    model: str
    size: tuple[int, int]
    path: str
    ms: float | None = None
    images_per_s: float | None = None
    x_best_torch: float | None = None  # the faster PyTorch path's time / this path's
    error: str | None = None


def parse_size(text: str) -> tuple[int, int]:
    """``360x480`` -> (360, 480); at least 32 pixels a side (the networks down-sample by up to 32)."""
    try:
        h, w = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise ConfigError(f"--sizes {text!r}: write H x W as e.g. 360x480") from None
    if min(h, w) < 32:
        raise ConfigError(f"--sizes {text}: use at least 32 pixels a side")
    return h, w


def _network(entry: str, classes: int) -> tuple[str, Any, dict[str, Any] | None]:
    """(label, Segmentor in eval mode, checkpoint meta or None) for a model entry or a checkpoint path."""
    from ladseg.bench.measure import split_model
    from ladseg.models import build_model

    if entry.endswith((".pth", ".pt")):
        from ladseg.engine.checkpoint import build_model_from_checkpoint

        model, meta = build_model_from_checkpoint(entry)
        if model.in_channels != 3:
            raise ConfigError(
                f"{entry}: a {model.in_channels}-channel network (LAD teacher); bench a student"
            )
        return Path(entry).name, model, meta
    name, backbone = split_model(entry, "resnet18")
    return entry, build_model(name, backbone, classes, aux=False).eval(), None


def _calibration(meta: dict[str, Any] | None, size: tuple[int, int], count: int) -> Any:
    from ladseg.quantize import Calibration, checkpoint_calibration

    if meta is not None:
        return checkpoint_calibration(meta, count)
    gen = np.random.default_rng(0)
    inputs = [gen.standard_normal((1, 3, *size)).astype(np.float32) for _ in range(NOISE_CALIBRATION)]
    return Calibration(inputs, {"kind": "noise", "images": len(inputs)})


def build_runners(
    model: Any, meta: dict[str, Any] | None, size: tuple[int, int], paths: list[str], threads: int, tmp: Path,
    calib_count: int,
) -> tuple[dict[str, Callable[[], Any]], dict[str, str]]:  # fmt: skip
    """One zero-argument call per path (a forward pass on a fixed image); paths that fail to build
    are returned as errors instead."""
    from ladseg.engine.backends import session_for
    from ladseg.export import LogitsAtInputSize, export_onnx
    from ladseg.quantize import quantize_int8

    runners: dict[str, Callable[[], Any]] = {}
    errors: dict[str, str] = {}
    x = torch.randn(1, 3, *size, generator=torch.Generator().manual_seed(0))
    eager = LogitsAtInputSize(model).eval()
    fp32 = tmp / "fp32.onnx"
    for path in paths:
        try:
            if path == "torch":
                runners[path] = lambda: eager(x)
            elif path == "channels_last":
                cl = copy.deepcopy(eager).to(memory_format=torch.channels_last)
                x_cl = x.contiguous(memory_format=torch.channels_last)
                runners[path] = lambda cl=cl, x_cl=x_cl: cl(x_cl)
            else:
                if not fp32.is_file():
                    export_onnx(model, fp32, size=size)
                file = fp32
                if path in ("int8", "int8_plain"):
                    file = tmp / f"{path}.onnx"
                    calibration = _calibration(meta, size, calib_count)
                    quantize_int8(fp32, file, calibration, rewrite=path == "int8")
                session = session_for(file, torch.device("cpu"), threads)
                feed = {session.get_inputs()[0].name: x.numpy()}
                runners[path] = lambda s=session, f=feed: s.run(None, f)
        except Exception as exc:  # noqa: BLE001 - a path this platform lacks is reported, not fatal
            errors[path] = f"{type(exc).__name__}: {(str(exc).strip().splitlines() or [''])[0][:120]}"
    return runners, errors


def time_interleaved(runners: dict[str, Callable[[], Any]], warmup: int, iters: int) -> dict[str, float]:
    """Median seconds per call of each runner, timed round-robin."""
    times: dict[str, list[float]] = {k: [] for k in runners}
    with torch.inference_mode():
        for i in range(warmup + iters):
            for name, fn in runners.items():
                tic = time.perf_counter()
                fn()
                if i >= warmup:
                    times[name].append(time.perf_counter() - tic)
    return {k: statistics.median(v) for k, v in times.items()}


def bench_model(
    entry: str, sizes: list[tuple[int, int]], args: argparse.Namespace, threads: int
) -> list[InferenceRow]:
    label, model, meta = _network(entry, args.classes)
    rows = []
    for size in sizes:
        with tempfile.TemporaryDirectory(prefix="ladseg-bench-") as tmp:
            runners, errors = build_runners(
                model, meta, size, args.paths, threads, Path(tmp), args.calib_count
            )
            medians = time_interleaved(runners, args.warmup, args.iters)
        best = min((medians[p] for p in TORCH_PATHS if p in medians), default=None)
        for path in args.paths:
            t = medians.get(path)
            rows.append(InferenceRow(
                label, size, path, None if t is None else 1000 * t, None if t is None else 1 / t,
                None if (t is None or best is None) else best / t, errors.get(path),
            ))  # fmt: skip
            print(f"[bench] {label} {size[0]}x{size[1]} {path}: "
                  + (f"{1000 * t:.1f} ms" if t is not None else errors.get(path, "-")),
                  file=sys.stderr, flush=True)  # fmt: skip
    return rows


def run_inference_bench(args: argparse.Namespace) -> tuple[dict[str, Any], list[InferenceRow]]:
    from ladseg.engine.acceleration import set_threads

    sizes = [parse_size(s) for s in (args.sizes or DEFAULT_SIZES)]
    args.paths = list(args.paths or PATHS)
    threads = set_threads(torch.device("cpu"))
    entries = list(args.checkpoints or args.models or DEFAULT_MODELS)
    settings = {"threads": threads, "torch": torch.__version__, "onnxruntime": _ort_version(),
                "iters": args.iters, "warmup": args.warmup, "classes": args.classes,
                "weights": "checkpoints" if args.checkpoints else "random"}  # fmt: skip
    torch.manual_seed(0)
    rows = [row for entry in entries for row in bench_model(entry, sizes, args, threads)]
    return settings, rows


def _ort_version() -> str | None:
    try:
        import onnxruntime
    except ImportError:
        return None
    return onnxruntime.__version__


def _f(v: float | None, digits: int = 2) -> str:
    return "-" if v is None else f"{v:.{digits}f}"


def inference_markdown(settings: dict[str, Any], rows: list[InferenceRow]) -> str:
    lines = [
        f"CPU inference, batch 1, {settings['threads']} threads (torch {settings['torch']}, onnxruntime "
        f"{settings['onnxruntime']}), {settings['weights']} weights; median of {settings['iters']} rounds after "
        f"{settings['warmup']} warm-up, paths interleaved round by round. x best torch: the faster of "
        "torch NCHW and channels_last over this path, same model, size and run.",
        "",
        "| model | input | path | ms/image | images/s | x best torch |",
        "|---|---|---|---:|---:|---:|",
    ]
    for r in rows:
        ms = _f(r.ms, 1) if not r.error else f"failed: {r.error}"
        lines.append(
            f"| {r.model} | {r.size[0]}x{r.size[1]} | {r.path} | {ms} | {_f(r.images_per_s)} | {_f(r.x_best_torch)} |"
        )
    return "\n".join(lines)


__all__ = [
    "DEFAULT_MODELS",
    "DEFAULT_SIZES",
    "EXTRA_PATHS",
    "PATHS",
    "InferenceRow",
    "build_runners",
    "inference_markdown",
    "parse_size",
    "run_inference_bench",
    "time_interleaved",
]

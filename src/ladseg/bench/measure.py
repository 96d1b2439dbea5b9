"""Speed benchmark of the real training steps, label encoder and inference modes (``python -m ladseg.bench``).

For each model (DeepLabV3-R18, PSPNet-R18 by default) it builds, through ``build_model`` and
``build_method``, a supervised step, a LAD teacher step (``lad_teacher``: two paths through a
3 + 1 channel network) and a distillation step (``distill`` from a LAD teacher), and reports:

- images/s of each step, interleaved round by round (steps and variants) so the ratios
  teacher/supervised (LAD's target: <= 2.05, the two-path cost), distill/supervised (<= 1.4) and
  each variant's speed-up over the eager NCHW fp32 step ("x eager") come from one run under the
  same load; the median step time of the rounds is used;
- each step again with channels_last, autocast (bf16 on CPU, bf16/fp16 on CUDA), torch.compile
  (and channels_last + compile when both are asked), and ``--defaults``: what the engine picks
  on this device for a long run (``train.channels_last/compile/amp: auto``);
- the first step's time of each, and for compiled variants the compile time (first step minus
  a warm one), from which the number of steps that repay compiling follows;
- the label encoder's share of a teacher step (target < 2 %), and the encoder against a
  straightforward per-image, per-class loop (the reference code's approach) at batch 16, 512 x 512;
- evaluation images/s for whole-image, sliding-window and multi-scale + flip inference;
- peak memory of one step: CUDA ``max_memory_allocated`` during a warm step (weights, optimiser
  state and activations); on the CPU the rise of the process's resident set (``/proc/self/statm``
  sampled every 2 ms by a thread) during the *first* step of the model, i.e. activations, gradients
  and momentum buffers that reached the OS (a warm step reuses freed pages, so it would read ~0).
  The CPU figure is an approximation; the weights are excluded.
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor

from ladseg.labels import IGNORE_INDEX

STEPS = ("supervised", "lad_teacher", "distill")
TARGETS = {"teacher/supervised": 2.05, "distill/supervised": 1.4, "encoder share %": 2.0}


@dataclass(frozen=True)
class Variant:
    """One way to run the steps: memory format, compile, autocast (baseline: eager NCHW fp32)."""

    name: str
    channels_last: bool = False
    compile: bool = False
    amp: bool = False


BASELINE = Variant("baseline")


@dataclass
class StepResult:
    model: str
    variant: str  # baseline | channels_last | amp | compile | defaults (what the engine picks)
    step: str
    ms: float | None = None
    images_per_s: float | None = None
    peak_mib: float | None = None
    error: str | None = None
    speedup: float | None = None  # eager NCHW fp32 step time / this step time, same step and run
    first_ms: float | None = None  # the first step (compiles, allocates)
    compile_s: float | None = None  # compiled variants: first step minus a warm one


@dataclass
class BenchReport:
    settings: dict[str, Any]
    steps: list[StepResult] = field(default_factory=list)
    ratios: list[dict[str, Any]] = field(default_factory=list)
    encoder: dict[str, Any] = field(default_factory=dict)
    evaluation: list[dict[str, Any]] = field(default_factory=list)


# -- timing and memory -----------------------------------------------------------------------
def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _rss_bytes() -> int:
    try:
        with open("/proc/self/statm") as fh:
            return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except OSError:  # not Linux: the lifetime peak is the best there is
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


@contextmanager
def peak_memory(device: torch.device) -> Iterator[dict[str, float]]:
    """Yields a dict that holds ``peak_mib`` after the block (see the module docstring)."""
    out: dict[str, float] = {}
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
        yield out
        torch.cuda.synchronize(device)
        out["peak_mib"] = torch.cuda.max_memory_allocated(device) / 2**20
        return
    base = _rss_bytes()
    peak = [base]
    done = threading.Event()

    def sample() -> None:
        while not done.is_set():
            peak[0] = max(peak[0], _rss_bytes())
            done.wait(0.002)

    thread = threading.Thread(target=sample, daemon=True)
    thread.start()
    try:
        yield out
    finally:
        done.set()
        thread.join()
        peak[0] = max(peak[0], _rss_bytes())
        out["peak_mib"] = (peak[0] - base) / 2**20


def _timed(fn: Callable[[], Any], device: torch.device) -> float:
    _sync(device)
    tic = time.perf_counter()
    fn()
    _sync(device)
    return time.perf_counter() - tic


# -- the three training steps ----------------------------------------------------------------
def synthetic_batch(
    batch: int, crop: int, num_classes: int, device: torch.device, seed: int = 0
) -> dict[str, Tensor]:
    """Image noise and a blocky label map with some ignore pixels (what the encoder must handle)."""
    gen = torch.Generator().manual_seed(seed)
    image = torch.randn(batch, 3, crop, crop, generator=gen)
    blocks = torch.randint(0, num_classes, (batch, 1, max(1, crop // 32), max(1, crop // 32)), generator=gen)
    mask = torch.nn.functional.interpolate(blocks.float(), size=(crop, crop), mode="nearest")[:, 0].long()
    mask[:, : max(1, crop // 32)] = IGNORE_INDEX
    return {"image": image.to(device), "mask": mask.to(device)}


def build_step(
    model: str,
    backbone: str,
    step: str,
    num_classes: int,
    device: torch.device,
    variant: Variant,
    amp_mode: str,
) -> tuple[Callable[[dict[str, Tensor]], None], Any]:
    """One optimisation step of ``step`` as the engine runs it (autocast, scaler, SGD); returns (fn, method).

    Every variant but the baseline is prepared as the engine prepares a run
    (:mod:`ladseg.engine.acceleration`: frozen teacher under inference mode, fused steps on CUDA);
    the baseline is the plain eager NCHW fp32 step of the engine before those settings.
    """
    from ladseg.engine import acceleration as accel
    from ladseg.engine.amp import build_amp
    from ladseg.methods import build_method
    from ladseg.methods.label_encoding import channels
    from ladseg.models import build_model

    label_ch = channels("random_codes", num_classes)
    kw = _input_normalization()
    if step == "supervised":
        method = build_method("supervised", {}, build_model(model, backbone, num_classes), num_classes, **kw)
    elif step == "lad_teacher":
        net = build_model(model, backbone, num_classes, in_channels=3 + label_ch)
        method = build_method("lad_teacher", {}, net, num_classes, **kw)
    else:
        teacher = build_model(model, backbone, num_classes, in_channels=3 + label_ch).to(device)
        method = build_method(
            "distill", {}, build_model(model, backbone, num_classes), num_classes, teacher=teacher, **kw
        )
    method.to(device)
    if variant != BASELINE:
        accel.prepare_method(method, variant.channels_last)
    if variant.compile:
        accel.compile_method(method)
    amp = build_amp(amp_mode if variant.amp else "none", device)
    params = [p for p in method.parameters() if p.requires_grad]
    optimizer = torch.optim.SGD(params, lr=1e-4, momentum=0.9, weight_decay=1e-4)
    if variant != BASELINE:
        accel.set_fused(optimizer, device)
    method.train()

    def run(batch: dict[str, Tensor]) -> None:
        with amp.autocast():
            loss = method(batch)["loss"]
        optimizer.zero_grad(set_to_none=True)
        amp.scaler.scale(loss).backward()
        amp.scaler.step(optimizer)
        amp.scaler.update()

    return run, method


def split_model(entry: str, backbone: str) -> tuple[str, str]:
    """``"stdc:stdc1"`` -> (``"stdc"``, ``"stdc1"``); a plain name takes ``--backbone``."""
    name, _, own = entry.partition(":")
    return name, own or backbone


def _input_normalization() -> dict[str, Any]:
    """``data_normalization=`` for ``build_method`` as the engine passes it (ImageNet inputs), where it exists."""
    try:
        from ladseg.engine.inputs import input_normalization
    except ImportError:
        return {}
    return {"data_normalization": input_normalization("imagenet")}


def _error(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {(str(exc).strip().splitlines() or [''])[0][:120]}"


def bench_steps(
    model: str, variants: list[Variant], args: argparse.Namespace, device: torch.device
) -> list[StepResult]:
    """The three steps of every variant, timed round-robin over variants and steps.

    Interleaving puts the baseline and each variant under the same load, so the speed-ups and
    ratios hold even on a shared machine. The first call of each (compiling, allocating) is timed
    on its own; ``--warmup`` further untimed rounds follow, then ``--iters`` timed ones.
    """
    batch = synthetic_batch(args.batch, args.crop, args.classes, device)
    cl_batch = {**batch, "image": batch["image"].contiguous(memory_format=torch.channels_last)}
    keys = [(v, s) for v in variants for s in STEPS]
    results = {(v, s): StepResult(model, v.name, s) for v, s in keys}
    fns: dict[tuple[Variant, str], Callable[[dict[str, Tensor]], None]] = {}
    for v, s in keys:
        try:
            fns[v, s], _ = build_step(
                *split_model(model, args.backbone), s, args.classes, device, v, args.amp_mode
            )
        except Exception as exc:  # noqa: BLE001 - a variant the platform lacks is reported, not fatal
            results[v, s].error = _error(exc)
    times: dict[tuple[Variant, str], list[float]] = {k: [] for k in fns}
    for i in range(1 + args.warmup + args.iters):
        for key, fn in list(fns.items()):
            data = cl_batch if key[0].channels_last else batch
            try:
                if i == 0:  # cold step: compile time, and (CPU) what the process grows by
                    with peak_memory(device) if device.type == "cpu" else nullcontext({}) as mem:
                        t = _timed(lambda fn=fn, data=data: fn(data), device)
                    results[key].first_ms = 1000 * t
                    results[key].peak_mib = mem.get("peak_mib")
                else:
                    t = _timed(lambda fn=fn, data=data: fn(data), device)
            except Exception as exc:  # noqa: BLE001 - e.g. torch.compile without a C++ compiler
                results[key].error = _error(exc)
                del fns[key]
                continue
            if i > args.warmup:
                times[key].append(t)
    for key, fn in fns.items():
        median = statistics.median(times[key])
        r = results[key]
        r.ms, r.images_per_s = 1000 * median, args.batch / median
        if key[0].compile and r.first_ms is not None:
            r.compile_s = max(0.0, (r.first_ms - r.ms) / 1000)
        if device.type == "cuda":  # a warm step: the allocator's own peak counter is exact
            data = cl_batch if key[0].channels_last else batch
            with peak_memory(device) as mem:
                fn(data)
            r.peak_mib = mem["peak_mib"]
    for v, s in keys:
        base = results[BASELINE, s].ms if (BASELINE, s) in results else None
        if base and results[v, s].ms:
            results[v, s].speedup = base / results[v, s].ms  # type: ignore[operator]
    return [results[k] for k in keys]


# -- the label encoder -----------------------------------------------------------------------
def reference_loop_encode(
    mask: Tensor, num_classes: int, noise: float = 0.03, ignore_index: int = IGNORE_INDEX
) -> Tensor:
    """The baseline: for every image and every class, draw a code and write it into that class's pixels."""
    out = torch.zeros(mask.shape[0], 1, *mask.shape[1:], device=mask.device)
    for n in range(mask.shape[0]):
        for c in [*range(num_classes), ignore_index]:
            region = mask[n] == c
            out[n, 0][region] = torch.randn((), device=mask.device)
    return out + noise * torch.randn_like(out)


def bench_encoder(args: argparse.Namespace, device: torch.device) -> dict[str, Any]:
    from ladseg.methods.label_encoding import EncoderParams, LabelEncoder

    encoder = LabelEncoder(EncoderParams(), args.classes)
    mask = synthetic_batch(args.encoder_batch, args.encoder_size, args.classes, device, seed=1)["mask"]
    reps = max(1, args.iters)
    encoder(mask), reference_loop_encode(mask, args.classes)  # warm-up
    fast = statistics.median(_timed(lambda: encoder(mask), device) for _ in range(reps))
    loop = statistics.median(
        _timed(lambda: reference_loop_encode(mask, args.classes), device) for _ in range(reps)
    )
    small = synthetic_batch(args.batch, args.crop, args.classes, device)["mask"]
    at_step = statistics.median(_timed(lambda: encoder(small), device) for _ in range(3 * reps))
    return {"batch": args.encoder_batch, "size": args.encoder_size, "classes": args.classes,
            "vectorised_ms": 1000 * fast, "loop_ms": 1000 * loop, "speedup": loop / fast,
            "at_step_ms": 1000 * at_step}  # fmt: skip


# -- evaluation modes ------------------------------------------------------------------------
def bench_eval(model: str, args: argparse.Namespace, device: torch.device) -> list[dict[str, Any]]:
    """Inference images/s of an image of crop x 2*crop (a street-scene aspect) per mode."""
    from ladseg.engine.inference import infer
    from ladseg.models import build_model

    net = build_model(*split_model(model, args.backbone), args.classes).to(device).eval()
    x = torch.randn(1, 3, args.crop, 2 * args.crop, device=device)
    modes = {
        "whole": {},
        "slide": {"crop_size": [args.crop, args.crop]},
        "multiscale+flip": {"scales": args.eval_scales, "flip": True},
    }
    rows = []
    for name, kwargs in modes.items():
        mode = "multiscale" if name.startswith("multiscale") else name

        def once(mode: str = mode, kwargs: dict[str, Any] = kwargs) -> Tensor:
            return infer(net, x, mode, **kwargs)

        with torch.inference_mode():
            once()
            t = statistics.median(_timed(once, device) for _ in range(max(1, args.iters)))
        rows.append(
            {"model": model, "mode": name, "size": list(x.shape[-2:]), "images_per_s": 1 / t, "ms": 1000 * t}
        )
    return rows

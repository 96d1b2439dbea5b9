"""Speed benchmark (``python -m ladseg.bench`` / ``ladseg bench``): driver, Markdown report, arguments.

What is measured and how: :mod:`ladseg.bench.measure`.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
from dataclasses import asdict, replace
from pathlib import Path

import torch

from ladseg.bench.inference import (
    DEFAULT_MODELS,
    DEFAULT_SIZES,
    EXTRA_PATHS,
    PATHS,
    inference_markdown,
    run_inference_bench,
)
from ladseg.bench.measure import (
    BASELINE,
    STEPS,
    TARGETS,
    BenchReport,
    StepResult,
    Variant,
    bench_encoder,
    bench_eval,
    bench_steps,
    build_step,
    peak_memory,
    reference_loop_encode,
    synthetic_batch,
)
from ladseg.errors import ConfigError

TRAINING_MODELS = ("deeplabv3", "pspnet")

__all__ = [
    "STEPS",
    "TARGETS",
    "BenchReport",
    "StepResult",
    "Variant",
    "add_arguments",
    "build_step",
    "main",
    "peak_memory",
    "reference_loop_encode",
    "run",
    "run_bench",
    "synthetic_batch",
    "to_markdown",
]


# -- driver and report -----------------------------------------------------------------------
def run_bench(args: argparse.Namespace) -> BenchReport:
    from ladseg.engine.builders import resolve_device

    device = resolve_device(args.device)
    args.models = args.models or list(TRAINING_MODELS)
    if args.amp_mode == "auto":
        args.amp_mode = "fp16" if device.type == "cuda" and not torch.cuda.is_bf16_supported() else "bf16"
    if args.amp_mode == "fp16" and device.type != "cuda":
        raise ConfigError("--amp-dtype fp16 needs CUDA; use bf16 on the CPU")
    variants = select_variants(args, device)
    settings = {
        "device": str(device) if device.type == "cpu" else torch.cuda.get_device_name(device),
        "torch": torch.__version__, "threads": torch.get_num_threads(), "cpu_count": os.cpu_count(),
        "python": platform.python_version(), "batch": args.batch, "crop": args.crop, "iters": args.iters,
        "warmup": args.warmup, "classes": args.classes, "backbone": args.backbone, "amp_dtype": args.amp_mode,
        "variants": [asdict(v) for v in variants], "models": args.models,
    }  # fmt: skip
    report = BenchReport(settings)
    torch.manual_seed(0)
    for model in args.models:
        rows = bench_steps(model, variants, args, device)
        report.steps += rows
        for variant in variants:
            ms = {r.step: r.ms for r in rows if r.variant == variant.name}
            done = ", ".join(f"{s} {ms[s] or 0:.0f} ms" for s in STEPS)
            print(f"[bench] {model} {variant.name}: {done}", file=sys.stderr, flush=True)
            if ms["supervised"]:
                report.ratios.append({
                    "model": model, "variant": variant.name,
                    "teacher/supervised": ms["lad_teacher"] / ms["supervised"] if ms["lad_teacher"] else None,
                    "distill/supervised": ms["distill"] / ms["supervised"] if ms["distill"] else None,
                })  # fmt: skip
        if not args.skip_eval:
            report.evaluation += bench_eval(model, args, device)
    report.encoder = bench_encoder(args, device)
    teacher = [r for r in report.steps if r.step == "lad_teacher" and r.variant == "baseline" and r.ms]
    for r in teacher:  # two encoder calls per teacher step
        share = 100 * 2 * report.encoder["at_step_ms"] / r.ms
        report.encoder[f"share_of_teacher_step_%_{r.model}"] = share
    return report


def select_variants(args: argparse.Namespace, device: torch.device) -> list[Variant]:
    """The eager NCHW fp32 baseline, one variant per flag, their combinations, and the engine's choice.

    Combinations: channels_last with compile and/or autocast when those flags are given together
    (CUDA's defaults are all three), so each combination is timed in the same run.
    """
    from ladseg.engine import acceleration as accel
    from ladseg.engine.amp import resolve_amp_mode

    flags = {"channels_last": args.channels_last, "amp": args.amp, "compile": args.compile}
    variants = [BASELINE]
    for name, wanted in flags.items():  # one variant per flag
        if wanted:
            variants.append(Variant(name, **{name: True}))
    if args.channels_last:  # channels_last with the others (the engine never compiles NCHW)
        combos = [("amp",), ("compile",), ("amp", "compile")]
        for combo in combos:
            if all(flags[c] for c in combo):
                on = dict.fromkeys(combo, True)
                variants.append(Variant("+".join(("channels_last", *combo)), channels_last=True, **on))
    if args.defaults:  # a long run's auto choices (train.channels_last/compile/amp: auto)
        compile_it, _ = accel.compile_decision("auto", 10**9, device)
        picked = {"channels_last": accel.use_channels_last("auto", device),
                  "amp": resolve_amp_mode("auto", device) != "none", "compile": compile_it}  # fmt: skip
        chosen = Variant(
            f"defaults ({'+'.join(k for k, v in picked.items() if v) or 'eager NCHW fp32'})", **picked
        )
        same = [i for i, v in enumerate(variants) if i and replace(v, name=chosen.name) == chosen]
        if same:  # the same settings time once, under the defaults' name
            variants[same[0]] = chosen
        else:
            variants.append(chosen)
    return variants


def _f(v: float | None, digits: int = 2) -> str:
    return "-" if v is None else f"{v:.{digits}f}"


def to_markdown(report: BenchReport) -> str:
    s = report.settings
    lines = [
        f"Device: {s['device']} (torch {s['torch']}, {s['threads']} threads of {s['cpu_count']} CPUs); "
        f"batch {s['batch']}, crop {s['crop']}x{s['crop']}, {s['classes']} classes, "
        f"median of {s['iters']} rounds after a first step and {s['warmup']} warm-up; variants interleaved "
        f"round by round; autocast dtype {s['amp_dtype']}. x eager: the eager NCHW fp32 (baseline) step's "
        "time over this one's, same step, same run.",
        "",
        "| model | variant | step | images/s | ms/step | x eager | x supervised | first step s | compile s | peak MiB |",
        "|---|---|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    sup = {(r.model, r.variant): r.ms for r in report.steps if r.step == "supervised"}
    for r in report.steps:
        base = sup.get((r.model, r.variant))
        ratio = r.ms / base if (r.ms and base) else None
        ips = _f(r.images_per_s) if not r.error else f"failed: {r.error}"
        first = r.first_ms / 1000 if r.first_ms is not None else None
        lines.append(
            f"| {r.model} | {r.variant} | {r.step} | {ips} | {_f(r.ms, 1)} | {_f(r.speedup)} | {_f(ratio)} "
            f"| {_f(first, 1)} | {_f(r.compile_s, 1)} | {_f(r.peak_mib, 0)} |"
        )
    lines += ["", "| model | variant | teacher/supervised (target <= 2.05) | distill/supervised (target <= 1.4) |",
              "|---|---|---:|---:|"]  # fmt: skip
    for r in report.ratios:
        lines.append(
            f"| {r['model']} | {r['variant']} | {_f(r['teacher/supervised'])} | {_f(r['distill/supervised'])} |"
        )
    e = report.encoder
    lines += ["", f"Label encoder at batch {e['batch']}, {e['size']}x{e['size']}, {e['classes']} classes: "
              f"vectorised {_f(e['vectorised_ms'], 1)} ms, per-image per-class loop {_f(e['loop_ms'], 1)} ms "
              f"({_f(e['speedup'], 1)}x faster). At the step size: {_f(e['at_step_ms'], 2)} ms per call."]  # fmt: skip
    for key, value in e.items():
        if key.startswith("share_of_teacher_step_%_"):
            lines.append(
                f"- share of a {key.rsplit('_', 1)[-1]} teacher step (2 calls; target < 2 %): {_f(value)} %"
            )
    if report.evaluation:
        lines += ["", "| model | eval mode | input | images/s | ms/image |", "|---|---|---|---:|---:|"]
        for r in report.evaluation:
            lines.append(
                f"| {r['model']} | {r['mode']} | {r['size'][0]}x{r['size'][1]} | {_f(r['images_per_s'])} | {_f(r['ms'], 1)} |"
            )
    return "\n".join(lines)


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--models",
        nargs="+",
        default=None,
        help="segmentors, each NAME or NAME:BACKBONE (e.g. stdc:stdc1); default backbone --backbone; "
        f"default {' '.join(TRAINING_MODELS)} (with --inference: {' '.join(DEFAULT_MODELS)})",
    )
    p.add_argument("--backbone", default="resnet18")
    p.add_argument("--batch", type=int, default=2, help="training batch (default 2: CPU-sized)")
    p.add_argument("--crop", type=int, default=256, help="square training crop (default 256)")
    p.add_argument("--classes", type=int, default=19, help="number of classes (default 19, Cityscapes)")
    p.add_argument("--iters", type=int, default=5, help="timed rounds (median reported)")
    p.add_argument("--warmup", type=int, default=2, help="untimed rounds first")
    p.add_argument("--device", default="auto", help="auto | cpu | cuda | cuda:N")
    p.add_argument("--amp", action="store_true", help="also time each step under autocast")
    p.add_argument("--amp-dtype", dest="amp_mode", default="auto", choices=["auto", "bf16", "fp16"],
                   help="autocast dtype (auto: bf16 on CPU and bf16-capable GPUs, else fp16)")  # fmt: skip
    p.add_argument("--channels-last", action="store_true", help="also time each step in channels_last")
    p.add_argument(
        "--compile", action="store_true", help="also time each step with torch.compile (slow start)"
    )
    p.add_argument(
        "--defaults",
        action="store_true",
        help="also time the engine's defaults on this device (train.channels_last/compile/amp: auto)",
    )
    p.add_argument(
        "--encoder-batch", type=int, default=16, help="label-encoder comparison batch (default 16)"
    )
    p.add_argument(
        "--encoder-size", type=int, default=512, help="label-encoder comparison size (default 512)"
    )
    p.add_argument("--eval-scales", type=float, nargs="+", default=[0.5, 0.75, 1.0, 1.25, 1.5, 1.75])
    p.add_argument("--skip-eval", action="store_true", help="leave out the inference modes")
    p.add_argument("--json", type=Path, default=None, help="also write the full results to this JSON file")
    d = p.add_argument_group(
        "deployment (--inference)",
        "CPU inference at batch 1: torch NCHW, channels_last, ONNX Runtime fp32 and int8, interleaved",
    )
    d.add_argument("--inference", action="store_true", help="run the deployment benchmark instead")
    d.add_argument("--sizes", nargs="+", metavar="HxW", default=None,
                   help=f"input sizes (default {' '.join(DEFAULT_SIZES)})")  # fmt: skip
    d.add_argument("--paths", nargs="+", choices=PATHS + EXTRA_PATHS, default=None,
                   help=f"paths to time (default {' '.join(PATHS)})")  # fmt: skip
    d.add_argument("--checkpoints", nargs="+", default=None,
                   help="trained students (.pth) instead of random-weight --models; int8 calibrates on "
                   "each one's training images")  # fmt: skip
    d.add_argument("--calib-count", type=int, default=32, help="int8 calibration images of a checkpoint")


def run(args: argparse.Namespace) -> int:
    """Run the benchmark, print the Markdown tables (and write ``--json``)."""
    if args.inference:
        return run_inference(args)
    for name in ("batch", "crop", "iters", "classes", "encoder_batch", "encoder_size"):
        if getattr(args, name) < 1:
            raise ConfigError(f"--{name.replace('_', '-')} must be >= 1, got {getattr(args, name)}")
    if args.crop < 32:
        raise ConfigError(f"--crop {args.crop}: the networks down-sample by 8 (PSP pools to 6x6); use >= 32")
    report = run_bench(args)
    print(to_markdown(report))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(asdict(report), indent=2))
    return 0


def run_inference(args: argparse.Namespace) -> int:
    """``--inference``: the deployment table (and ``--json``)."""
    for name in ("iters", "classes", "calib_count"):
        if getattr(args, name) < 1:
            raise ConfigError(f"--{name.replace('_', '-')} must be >= 1, got {getattr(args, name)}")
    settings, rows = run_inference_bench(args)
    print(inference_markdown(settings, rows))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(
            json.dumps({"settings": settings, "inference": [asdict(r) for r in rows]}, indent=2)
        )
    return 0


def main(argv: list[str] | None = None) -> int:
    from ladseg.errors import LadsegError

    p = argparse.ArgumentParser(
        prog="python -m ladseg.bench",
        description="Speed benchmark of LAD training steps and inference modes; --inference: deployment "
        "paths (torch, channels_last, ONNX Runtime fp32 and int8) on the CPU.",
    )
    add_arguments(p)
    args = p.parse_args(argv)
    try:
        return run(args)
    except LadsegError as exc:
        print(f"ladseg bench: error: {exc}")
        return 2


if __name__ == "__main__":
    raise SystemExit(main())

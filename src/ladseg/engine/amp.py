"""Mixed precision: which autocast dtype and whether a GradScaler is needed.

``bf16`` works on CPU and recent GPUs without loss scaling; ``fp16`` (CUDA only) needs a
GradScaler. ``auto`` picks bf16 on a GPU that supports it, else fp16 on CUDA, and full precision
on the CPU. Why not bf16 on a CPU with bf16 units (AVX512-BF16 or AMX), where it is faster: on the
2-core AVX512-BF16 machine of docs/bench.md it made the DeepLabV3-R18 steps 1.5-1.7x and the STDC1 steps
1.3x faster than fp32, but the CamVid STDC1 baseline (1000 steps) ended 1.8 mIoU lower over three
seeds (40.9 against 42.8, SE 0.6; docs/bench.md). A default that costs accuracy would bias every
comparison run on it, so bf16 on the CPU is one key away (``train.amp=bf16``) with that trade-off
stated, not the default.
Without bf16 units oneDNN emulates bf16 by conversion (not measured here: this CPU has the units),
which usually loses to fp32: :func:`amp_note` says so in one line.

The losses compute their softmaxes and similarity maps in float32 whatever the autocast dtype
(``ladseg.losses.common.feature_pair``), and the cross-entropy runs in float32 under autocast.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass

import torch

from ladseg.errors import ConfigError


@dataclass
class Amp:
    device: torch.device
    dtype: torch.dtype | None  # None: full precision
    scaler: torch.amp.GradScaler

    def autocast(self) -> contextlib.AbstractContextManager:
        if self.dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=self.dtype)


def cpu_has_native_bf16() -> bool:
    """Whether this CPU computes in bf16 natively (AVX512-BF16 or AMX tiles), not by emulation."""
    cpu = getattr(torch, "cpu", None)
    checks = ("_is_avx512_bf16_supported", "_is_amx_tile_supported")
    return any(bool(getattr(cpu, name, lambda: False)()) for name in checks)


def resolve_amp_mode(mode: str, device: torch.device) -> str:
    """``none`` / ``bf16`` / ``fp16`` for ``mode`` on ``device`` (``auto`` as the module docstring says)."""
    if mode != "auto":
        return mode
    if device.type == "cuda":
        return "bf16" if torch.cuda.is_bf16_supported() else "fp16"
    return "none"


def amp_note(mode: str, device: torch.device) -> str | None:
    """A line to print when the chosen precision is a poor fit for the device (None: nothing to say)."""
    if resolve_amp_mode(mode, device) == "bf16" and device.type == "cpu" and not cpu_has_native_bf16():
        return (
            "train.amp=bf16: this CPU has no bf16 units (AVX512-BF16/AMX): bf16 is emulated and usually "
            "slower than fp32 (compare with ladseg bench --amp)"
        )
    return None


def build_amp(mode: str, device: torch.device) -> Amp:
    mode = resolve_amp_mode(mode, device)
    if mode == "fp16" and device.type != "cuda":
        raise ConfigError("train.amp=fp16 needs a CUDA device; use bf16 (or none) on the CPU")
    dtype = {"none": None, "bf16": torch.bfloat16, "fp16": torch.float16}[mode]
    scaler = torch.amp.GradScaler(device.type, enabled=mode == "fp16")
    return Amp(device, dtype, scaler)

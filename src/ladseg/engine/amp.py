"""Mixed precision: which autocast dtype and whether a GradScaler is needed.

``bf16`` works on CPU and recent GPUs without loss scaling; ``fp16`` (CUDA only) needs a
GradScaler. ``auto`` picks, by measurement (``ladseg bench --amp``, docs/bench.md):

- CUDA: bf16 where the GPU supports it, else fp16;
- CPU with native bf16 arithmetic (AVX512-BF16 or AMX): bf16. On the 2-core AVX512-BF16 machine
  of issue 16 the DeepLabV3-R18 steps ran 1.6x faster than in fp32 at batch 4, crop 192, and
  CamVid trainings reached the fp32 accuracy (docs/bench.md);
- any other CPU: none (fp32). Without bf16 units oneDNN emulates bf16 by conversion, which is
  slower than fp32.

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
    if device.type == "cpu" and cpu_has_native_bf16():
        return "bf16"
    return "none"


def build_amp(mode: str, device: torch.device) -> Amp:
    mode = resolve_amp_mode(mode, device)
    if mode == "fp16" and device.type != "cuda":
        raise ConfigError("train.amp=fp16 needs a CUDA device; use bf16 (or none) on the CPU")
    dtype = {"none": None, "bf16": torch.bfloat16, "fp16": torch.float16}[mode]
    scaler = torch.amp.GradScaler(device.type, enabled=mode == "fp16")
    return Amp(device, dtype, scaler)

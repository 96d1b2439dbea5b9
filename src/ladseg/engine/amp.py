"""Mixed precision: which autocast dtype and whether a GradScaler is needed.

``bf16`` works on CPU and recent GPUs without loss scaling; ``fp16`` (CUDA only) needs a
GradScaler; ``auto`` picks bf16 on a GPU that supports it, else fp16 on CUDA, else none on CPU.
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


def build_amp(mode: str, device: torch.device) -> Amp:
    if mode == "auto":
        if device.type == "cuda":
            mode = "bf16" if torch.cuda.is_bf16_supported() else "fp16"
        else:
            mode = "none"
    if mode == "fp16" and device.type != "cuda":
        raise ConfigError("train.amp=fp16 needs a CUDA device; use bf16 (or none) on the CPU")
    dtype = {"none": None, "bf16": torch.bfloat16, "fp16": torch.float16}[mode]
    scaler = torch.amp.GradScaler(device.type, enabled=mode == "fp16")
    return Amp(device, dtype, scaler)

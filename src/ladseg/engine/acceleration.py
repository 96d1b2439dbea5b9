"""The speed decisions of a run, per device: memory format, torch.compile, threads, workers, pinning.

Why a module of its own: every choice here changes seconds per step, never the maths (up to float
rounding), and each was picked by measurement (``ladseg bench``, docs/bench.md) rather than by habit.

- ``train.channels_last: auto`` is on for CPU and CUDA: on a 2-core CPU it made the steps
  1.03-1.08x faster for DeepLabV3-R18 and STDC1 and 1.5-1.9x for DeepLabV3 on EfficientNet-Lite0
  at batch 4, crop 192 (NCHW was only faster at toy sizes; docs/bench.md); on GPUs it is what
  tensor-core convolutions want. The frozen teacher follows the trained network.
- ``train.compile: auto`` compiles on CUDA when the steps left in this process repay the compile
  time (:data:`COMPILE_PAYS_AFTER`, where Triton is installed), and never on the CPU: on a
  2-core CPU, compiling gave 0.95-1.02x alone, 0.99-1.10x on top of channels_last (DeepLabV3-R18)
  and 0.97-1.06x on top of channels_last + bf16 (DeepLabV3-R18, STDC1) for 13-84 s of compiling
  per step kind, so nothing repays it there.
  ``train.compile: true`` still compiles on the CPU (a C++ compiler is needed). Where compiling
  fails at the first step (no compiler, an unsupported op) the run says so in one line and
  continues eagerly.
- The frozen teacher runs under ``torch.inference_mode`` (no autograd bookkeeping at all); its
  outputs are cloned out of inference mode, so losses may save them for backward.
- CUDA only: ``cudnn.benchmark`` (fixed crop sizes), fused optimiser steps, pinned host memory and
  non-blocking copies; bf16/fp16 autocast comes from ``train.amp: auto`` (:mod:`ladseg.engine.amp`).
- CPU threads: ``cores / local processes`` (torchrun's ``LOCAL_WORLD_SIZE``) unless
  ``OMP_NUM_THREADS`` says otherwise, and at most that many loader workers per process, so two
  processes on one machine never oversubscribe its cores.
"""

from __future__ import annotations

import contextlib
import dataclasses
import importlib.util
import os
import shutil
from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor, nn

from ladseg.methods.base import Method
from ladseg.notes import note

#: Steps left from which ``auto`` compiles on CUDA (an estimate, not a GPU measurement): compile time
#: is about a minute per step kind, and a compiled GPU step commonly saves 10-30 %, so a thousand
#: steps repay it with margin. On the CPU ``auto`` never compiles: there the compiled step was no
#: faster than the eager one (docs/bench.md).
COMPILE_PAYS_AFTER = 1000
#: ``LADSEG_COMPILE_BACKEND=aot_eager`` (tests, debugging) replaces inductor without code generation.
BACKEND_ENV = "LADSEG_COMPILE_BACKEND"
MODES = ("auto", "true", "false")


def tri_state(value: bool | str, key: str) -> str:
    """``auto`` / ``true`` / ``false`` from a config value (YAML gives booleans for true/false)."""
    from ladseg.errors import ConfigError

    text = str(value).lower() if isinstance(value, (bool, str)) else ""
    if text not in MODES:
        raise ConfigError(f"config key {key!r}: expected auto, true or false, got {value!r}")
    return text


# -- machine ---------------------------------------------------------------------------------
def available_cores() -> int:
    """Cores this process may run on (the affinity mask, which containers and taskset narrow)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        return os.cpu_count() or 1


def local_processes() -> int:
    """Processes sharing this machine (torchrun's ``LOCAL_WORLD_SIZE``; 1 for a plain run)."""
    return max(1, int(os.environ.get("LOCAL_WORLD_SIZE", "1")))


def plan_threads(cores: int | None = None, processes: int | None = None) -> int:
    """Intra-op threads per process: ``cores / processes`` (at least 1)."""
    cores = available_cores() if cores is None else cores
    processes = local_processes() if processes is None else processes
    return max(1, cores // max(1, processes))


def plan_workers(requested: int, cores: int | None = None, processes: int | None = None) -> int:
    """Loader workers per process: the requested count, capped at this process's share of the cores."""
    return max(0, min(requested, plan_threads(cores, processes)))


def set_threads(device: torch.device) -> int:
    """Cap torch's CPU threads at this process's share of the cores; returns the count.

    Only lowers (a smaller count set by the caller stays), and leaves an explicit
    ``OMP_NUM_THREADS`` alone (torchrun sets 1 per process unless told otherwise).
    """
    if device.type == "cpu" and "OMP_NUM_THREADS" not in os.environ:
        plan = plan_threads()
        if torch.get_num_threads() > plan:
            torch.set_num_threads(plan)
    return torch.get_num_threads()


def inference_threads() -> int:
    """Intra-op threads for a runtime other than torch (ONNX Runtime): the rule of :func:`set_threads`,
    i.e. ``OMP_NUM_THREADS`` when set, else this process's share of the cores."""
    given = os.environ.get("OMP_NUM_THREADS", "")
    return max(1, int(given)) if given.strip().isdigit() else plan_threads()


# -- decisions -------------------------------------------------------------------------------
def use_channels_last(mode: bool | str, device: torch.device) -> bool:
    """``auto``: on (measured faster on this CPU at realistic sizes, and on CUDA)."""
    mode = tri_state(mode, "train.channels_last")
    return mode == "true" or (mode == "auto" and device.type in ("cpu", "cuda"))


def compiler_missing(device: torch.device) -> str | None:
    """Why torch.compile cannot work here (None: it can): inductor needs a C++ compiler / Triton."""
    if os.environ.get(BACKEND_ENV):
        return None  # a backend without code generation needs neither
    if not hasattr(torch, "compiler") or not hasattr(torch.compiler, "set_stance"):
        return f"torch {torch.__version__} is too old (torch.compile's set_stance needs >= 2.6)"
    if device.type == "cuda":
        return None if importlib.util.find_spec("triton") else "Triton is not installed"
    if device.type != "cpu":
        return f"no inductor backend is set up for {device.type}"
    names = [os.environ["CXX"]] if os.environ.get("CXX") else ["g++", "c++", "clang++"]
    if not any(shutil.which(n) for n in names):
        return f"no C++ compiler found ({', '.join(names)})"
    return None


def compile_decision(mode: bool | str, steps_left: int, device: torch.device) -> tuple[bool, str | None]:
    """(compile?, a line to log). ``auto`` compiles on CUDA when ``steps_left >= COMPILE_PAYS_AFTER``."""
    mode = tri_state(mode, "train.compile")
    if mode == "false" or (mode == "auto" and (device.type != "cuda" or steps_left < COMPILE_PAYS_AFTER)):
        return False, None
    why = compiler_missing(device)
    if why is not None:
        return False, f"train.compile: {why}; running eagerly"
    return True, None


def compile_options() -> dict[str, Any]:
    """Static shapes: training crops are fixed (validation runs eagerly), so no dynamic-shape graphs."""
    return {"backend": os.environ.get(BACKEND_ENV) or "inductor", "dynamic": False}


def compile_method(method: Method) -> None:
    """Compile the trained network in place (``state_dict`` keys unchanged) and the frozen teacher's forward."""
    method.network.compile(**compile_options())
    teacher = method.teacher
    if teacher is not None:
        frozen_forward(teacher, compile_it=True)


def prepare_method(method: Method, channels_last: bool) -> None:
    """Memory format of the method (and its frozen teacher); the teacher's forward under inference mode."""
    teacher = method.teacher
    if channels_last:
        method.to(memory_format=torch.channels_last)
        if teacher is not None:
            teacher.to(memory_format=torch.channels_last)
    if teacher is not None:
        frozen_forward(teacher)


def is_compile_error(exc: BaseException) -> bool:
    """A failure of dynamo/inductor (not of the data or the maths), anywhere in the cause chain."""
    seen: set[int] = set()
    e: BaseException | None = exc
    while e is not None and id(e) not in seen:
        seen.add(id(e))
        if type(e).__module__.startswith(("torch._dynamo", "torch._inductor")):
            return True
        e = e.__cause__ or e.__context__
    return False


def eager() -> contextlib.AbstractContextManager:
    """A block in which compiled modules run their eager code (validation; after a failed compile)."""
    if hasattr(torch, "compiler") and hasattr(torch.compiler, "set_stance"):
        return torch.compiler.set_stance("force_eager")
    return contextlib.nullcontext()


class StepRunner:
    """Runs training steps: eagerly, or compiled with a fallback to eager at the first step.

    ``mode``: ``eager`` (nothing compiled), ``first`` (compiled, the next step compiles),
    ``compiled``, or ``fallback`` (compiling failed: compiled modules run their eager code).
    A failed first step is rerun eagerly from the RNG states and BN buffers it started from, so
    the run continues as an eager run would.
    """

    def __init__(self) -> None:
        self.mode = "eager"

    def run(self, step: Callable[[], Any], module: nn.Module, log: bool = True) -> Any:
        if self.mode != "first":
            with eager() if self.mode == "fallback" else contextlib.nullcontext():
                return step()
        from ladseg.engine.rng import get_rng_state, set_rng_state

        rng = get_rng_state()
        buffers = {k: v.clone() for k, v in module.named_buffers()}
        try:
            out = step()
        except Exception as exc:
            if not is_compile_error(exc):
                raise
            self.mode = "fallback"
            if log:
                first = (str(exc).strip().splitlines() or [""])[0][:160]
                note(f"train.compile: compiling failed ({type(exc).__name__}: {first}); running eagerly")
            set_rng_state(rng)
            with torch.no_grad():
                for k, v in module.named_buffers():
                    v.copy_(buffers[k])
            with eager():
                return step()
        self.mode = "compiled"
        return out


# -- the frozen teacher ----------------------------------------------------------------------
def _out_of_inference(value: Any) -> Any:
    """Clones of the inference tensors in ``value`` (tensors, lists, tuples, dicts, dataclasses)."""
    if isinstance(value, Tensor):
        return value.clone() if value.is_inference() else value
    if isinstance(value, (list, tuple)):
        return type(value)(_out_of_inference(v) for v in value)
    if isinstance(value, dict):
        return {k: _out_of_inference(v) for k, v in value.items()}
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return dataclasses.replace(
            value, **{f.name: _out_of_inference(getattr(value, f.name)) for f in dataclasses.fields(value)}
        )
    return value


def frozen_forward(teacher: nn.Module, compile_it: bool = False) -> None:
    """Run ``teacher(x)`` under ``torch.inference_mode`` (compiled when asked); outputs usable by autograd.

    Replaces the instance's ``forward`` (the module tree, its ``state_dict`` and hooks are untouched).
    """
    inner: Callable[..., Any] = type(teacher).forward.__get__(teacher)
    if compile_it:
        inner = torch.compile(inner, **compile_options())

    def forward(*args: Any, **kwargs: Any) -> Any:
        with torch.inference_mode():
            out = inner(*args, **kwargs)
        return _out_of_inference(out)

    teacher.forward = forward  # type: ignore[method-assign]


# -- CUDA ------------------------------------------------------------------------------------
def setup_device(device: torch.device) -> None:
    """cudnn picks the fastest kernels for the fixed crop size (CUDA); TF32 matmuls on Ampere+."""
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True


def set_fused(optimizer: torch.optim.Optimizer, device: torch.device) -> bool:
    """Fused (one-kernel) SGD/Adam(W) steps on CUDA when every parameter is a CUDA float tensor.

    Called after building and after loading a state dict (which restores the saving run's choice),
    so a checkpoint written on one device resumes with the right setting on another.
    """
    params = [p for g in optimizer.param_groups for p in g["params"]]
    fused = (
        device.type == "cuda"
        and "fused" in optimizer.defaults
        and all(p.is_cuda and p.is_floating_point() for p in params)
    )
    for group in optimizer.param_groups:
        if "fused" in group:
            group["fused"] = fused
            if fused:
                group["foreach"] = False
    if fused:  # as the constructor does for fused=True: the scaler hands its scale to the step
        optimizer._step_supports_amp_scaling = True  # type: ignore[attr-defined]
    return fused


def pin_loader(loader: Any, device: torch.device) -> Any:
    """Page-locked batches on CUDA, so host-to-device copies can be non-blocking."""
    if device.type == "cuda" and hasattr(loader, "pin_memory"):
        loader.pin_memory = True
    return loader

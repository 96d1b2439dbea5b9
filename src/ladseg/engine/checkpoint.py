"""Checkpoints that carry their metadata and load with ``torch.load(weights_only=True)``.

Layout (docs/ARCHITECTURE.md "Checkpoints")::

    {"model": state_dict of method.export_model(),
     "meta": {"format", "ladseg_version", "spec", "class_names", "palette", "normalize", "config",
              "iteration", "metrics"},
     "state": {"method", "optimizer", "scheduler", "iteration", "rng", ...}}   # resume only

``state.separate_optimizers`` holds the optimisers of the method's parts that step themselves (the
adversarial loss's discriminator Adam), by module name; their weights are in ``state.method``.

Plain tensors and plain data only, so a checkpoint alone is enough to predict with and loading
one never runs pickled code. Writes are atomic (temporary file in the same folder, fsync,
rename) and the previous file is kept as ``<name>.prev``, so a crash mid-write never loses the
last good checkpoint. ``meta.format`` (:data:`CHECKPOINT_FORMAT`) and ``meta.ladseg_version`` say
what wrote a checkpoint, so a later incompatible layout is refused by name. Checkpoints of the reference code (CIRKD/LAD) are imported through
:mod:`ladseg.models.convert`.
"""

from __future__ import annotations

import glob
import inspect
import os
import shutil
import tempfile
from collections import OrderedDict
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ladseg.errors import CheckpointError
from ladseg.models import Segmentor, build_model
from ladseg.models.weights import (
    adapt_input_conv,
    dead_input_channels,
    drop_dead_input_channels,
    first_conv_key,
    safe_torch_load,
)

#: the layout version written in ``meta.format``; checkpoints without one are format 1
CHECKPOINT_FORMAT = 1

# What a reference (CIRKD/LAD) checkpoint implies about its inputs.
REFERENCE_META = {"normalize": "reference_bgr", "class_names": None, "palette": None}


def save_checkpoint(path: str | Path, payload: dict[str, Any]) -> Path:
    """Write ``payload`` atomically; an existing file at ``path`` becomes ``path.prev``.

    At every instant ``path`` holds a complete checkpoint (the old one until the new one is
    renamed over it): the previous file is hard-linked (or copied) to ``.prev`` first instead of
    being moved away, so a SIGKILL between the two renames cannot leave a run without
    ``last.pth``. Temporary files left by a killed writer are removed by the next save; a failed
    write (a full disk) removes its own and raises an ``OSError`` naming ``path`` (torch's zip writer
    reports it as a ``RuntimeError``: that becomes a :class:`CheckpointWriteError`).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_temps(path)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            torch.save(payload, fh)
            fh.flush()
            os.fsync(fh.fileno())
        if path.exists():
            _keep_previous(path)
        os.replace(tmp_name, path)
        _fsync_dir(path.parent)
    except BaseException as exc:
        if os.path.exists(tmp_name):
            os.unlink(tmp_name)
        if isinstance(exc, OSError) and not exc.filename:  # a write into the open file names nothing
            raise OSError(exc.errno, exc.strerror or str(exc), str(path)) from exc
        if isinstance(exc, RuntimeError) and any(
            w in str(exc) for w in ("PytorchStreamWriter", "inline_container")
        ):
            raise CheckpointWriteError(_write_failure(path, exc)) from exc
        raise
    return path


class CheckpointWriteError(CheckpointError):
    """torch could not write a checkpoint (a full disk, a file size limit); the previous one is intact."""


def _write_failure(path: Path, exc: RuntimeError) -> str:
    """One line: the file, torch's reason (without its C++ location), and what is still on disk."""
    reason = str(exc).strip().splitlines()[0]
    reason = reason.split("] ", 1)[-1].lstrip(". ") if reason.startswith("[enforce fail") else reason
    kept = f"the previous checkpoint {path} is intact" if path.is_file() else f"nothing was written at {path}"
    return f"cannot write {path} (is the disk full? torch said: {reason}); {kept}"


def remove_stale_temps(path: str | Path) -> list[Path]:
    """Delete the temporary files a killed :func:`save_checkpoint` of ``path`` left behind."""
    path = Path(path)
    stale = sorted(path.parent.glob(f".{glob.escape(path.name)}.*.tmp"))
    for tmp in stale:
        tmp.unlink(missing_ok=True)
    return stale


def _keep_previous(path: Path) -> None:
    """``path`` -> ``path.prev`` without ever removing ``path`` (hard link, or a copy)."""
    prev = path.with_name(path.name + ".prev")
    if prev.exists() and os.path.samefile(path, prev):
        return  # a save killed before its last rename already linked them
    _keep_previous_as(path, prev)


def _keep_previous_as(source: Path, target: Path) -> None:
    """``target`` becomes a hard link to (or a copy of) ``source``, replaced in one rename."""
    staged = target.with_name(f".{target.name}.{os.getpid()}.tmp")
    staged.unlink(missing_ok=True)
    try:
        os.link(source, staged)
    except OSError:  # a file system without hard links
        shutil.copy2(source, staged)
    os.replace(staged, target)


def _fsync_dir(folder: Path) -> None:
    """Make the renames durable (a no-op where directories cannot be opened, e.g. Windows)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def use_previous_checkpoint(path: str | Path) -> Path:
    """Make ``path.prev`` the current checkpoint again: the unreadable ``path`` is kept as
    ``path.damaged`` (returned) and ``path`` becomes a link to (or copy of) ``path.prev``."""
    path = Path(path)
    aside = path.with_name(path.name + ".damaged")
    os.replace(path, aside)
    _keep_previous_as(path.with_name(path.name + ".prev"), path)
    _fsync_dir(path.parent)
    return aside


def check_format(meta: dict[str, Any], path: str | Path | None) -> None:
    """Refuse a checkpoint written in a newer layout than this ladseg reads, naming both versions."""
    found = meta.get("format", 1)
    if not isinstance(found, int) or found > CHECKPOINT_FORMAT:
        from ladseg import __version__

        writer = meta.get("ladseg_version", "an unknown version")
        raise CheckpointError(
            f"{path or 'checkpoint'} has checkpoint format {found!r} (written by ladseg {writer}); "
            f"ladseg {__version__} reads formats up to {CHECKPOINT_FORMAT}: upgrade ladseg to read it"
        )


#: module names of a method's resume state that were renamed (old -> new): the config's network was
#: ``student``, which a LAD teacher is not; distillation's built losses shared the name of their specs
#: (the config's ``method.kd_losses``)
RENAMED_METHOD_MODULES = {"student": "network", "kd_losses": "loss_modules"}


def _renamed(name: str) -> str:
    """A module name or state-dict key under its current name (``student.head.x`` -> ``network.head.x``)."""
    for old, new in RENAMED_METHOD_MODULES.items():
        if name == old or name.startswith(old + "."):
            return new + name[len(old) :]
    return name


def migrate_resume_state(state: dict[str, Any]) -> dict[str, Any]:
    """``state`` with the old module names of ``state.method`` and ``state.separate_optimizers`` renamed,
    so a resume checkpoint of an earlier ladseg resumes exactly.

    Keyed off the names, not ``meta.format``: the format is the layout every reader relies on (``model``,
    ``meta``, ``state``), which did not change; only resuming reads these names and no method has a
    module of an old name, so each key says its own age. A format bump would make earlier versions
    refuse to predict from new checkpoints whose ``model`` they read as before.
    """
    state = dict(state)
    method = state.get("method")
    if isinstance(method, dict):
        renamed: dict[str, Any] = OrderedDict((_renamed(k), v) for k, v in method.items())
        metadata = getattr(method, "_metadata", None)
        if metadata is not None:  # per-module versions, which e.g. BatchNorm's loading reads
            renamed._metadata = OrderedDict((_renamed(k), v) for k, v in metadata.items())  # type: ignore[attr-defined]
        state["method"] = renamed
    optimizers = state.get("separate_optimizers")
    if isinstance(optimizers, dict):
        state["separate_optimizers"] = {_renamed(k): v for k, v in optimizers.items()}
    return state


def load_checkpoint(path: str | Path) -> dict[str, Any]:
    """Read a checkpoint safely (weights_only=True): an unsafe pickle is refused, not run."""
    payload = safe_torch_load(path, "checkpoint")
    if not isinstance(payload, dict):
        raise CheckpointError(f"{path}: expected a mapping at the top level, got {type(payload).__name__}")
    return payload


def is_ladseg_checkpoint(payload: dict[str, Any]) -> bool:
    return isinstance(payload.get("model"), dict) and isinstance(payload.get("meta"), dict)


def _weightless(head: Any) -> Any:
    """A head spec without the options that change no weight (dropout rates)."""
    if not isinstance(head, dict):
        return head
    return {k: v for k, v in head.items() if "dropout" not in k}


def _spec_diff(expected: dict[str, Any], actual: dict[str, Any]) -> list[str]:
    """Spec fields that differ; dropout rates do not count (a fine-tuning run may change them)."""
    keys = sorted((set(expected) | set(actual)) - {"pretrained"})
    return [
        f"{k}: checkpoint {expected.get(k)!r} vs model {actual.get(k)!r}"
        for k in keys
        if (_weightless(expected.get(k)) if k == "head" else expected.get(k))
        != (_weightless(actual.get(k)) if k == "head" else actual.get(k))
    ]


def drop_dead_channels(
    model: nn.Module, state_dict: dict[str, torch.Tensor], spec: dict[str, Any] | None
) -> tuple[dict[str, torch.Tensor], dict[str, Any] | None]:
    """Fit a checkpoint whose first conv has dead (all-zero) extra input channels to a 3-channel ``model``.

    The reference code saves students with a 4-channel first conv whose 4th channel is all zero
    (it only ever saw zeros): dropping it is exact. Anything else is returned unchanged, so a real
    mismatch is still reported by :func:`load_model_weights`.
    """
    key = first_conv_key(model)
    own = model.state_dict().get(key) if key else None
    weight = state_dict.get(key) if key else None
    if own is None or weight is None or weight.dim() != 4 or own.shape[1] != 3:
        return state_dict, spec
    if weight.shape[1] == 3 or not dead_input_channels(weight):
        return state_dict, spec
    state_dict = {**state_dict, key: drop_dead_input_channels(weight)}  # type: ignore[index]
    if spec is not None and spec.get("in_channels", 3) > 3:
        spec = {**spec, "in_channels": 3}
    return state_dict, spec


def check_model_spec(model: nn.Module, spec: dict[str, Any] | None, source: str = "checkpoint") -> None:
    """Raise :class:`CheckpointError` naming each spec field (name, backbone, num_classes, ...)
    where the checkpoint's saved ``spec`` differs from ``model.spec``; no-op when either is absent.

    Call it before ``load_state_dict`` (e.g. on resume) so the user reads "num_classes:
    checkpoint 21 vs model 19" instead of a list of tensor shape mismatches."""
    model_spec = getattr(model, "spec", None)
    if spec is not None and model_spec is not None:
        diff = _spec_diff(spec, model_spec)
        if diff:
            hint = ""
            if int(spec.get("in_channels", 3) or 3) > 3 and model_spec.get("in_channels") == 3:
                from ladseg.models.convert import image_only_hint

                hint = f"; for {image_only_hint(source.split(' (')[0])}"
            raise CheckpointError(f"{source} was saved for another model: " + "; ".join(diff) + hint)


COMPILED_PREFIX = "_orig_mod."
BRANCH_PREFIX = "label_branch."  # state-dict keys of a LAD teacher's label branch


def strip_compiled_prefix(state_dict: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Keys without ``torch.compile``'s ``_orig_mod.`` wrapper prefix.

    ladseg compiles in place, so its own checkpoints never carry the prefix; a state dict saved
    from a ``torch.compile(model)`` wrapper elsewhere loads the same as an eager one.
    """
    if not any(COMPILED_PREFIX in k for k in state_dict):
        return state_dict
    return {k.replace(COMPILED_PREFIX, ""): v for k, v in state_dict.items()}


def load_model_weights(
    model: nn.Module,
    state_dict: dict[str, torch.Tensor],
    spec: dict[str, Any] | None = None,
    source: str = "checkpoint",
) -> None:
    """Load ``state_dict`` strictly, explaining a mismatch (architecture, class count, first keys)."""
    check_model_spec(model, spec, source)
    state_dict = strip_compiled_prefix(state_dict)
    own = model.state_dict()
    missing = [k for k in own if k not in state_dict]
    unexpected = [k for k in state_dict if k not in own]
    shapes = [
        f"{k} {tuple(state_dict[k].shape)} vs {tuple(v.shape)}"
        for k, v in own.items()
        if k in state_dict and tuple(state_dict[k].shape) != tuple(v.shape)
    ]
    problems = []
    if shapes:
        problems.append(f"shape mismatch (checkpoint vs model): {', '.join(shapes[:5])}")
    if missing:
        problems.append(f"missing keys: {', '.join(missing[:5])}{' ...' if len(missing) > 5 else ''}")
    if unexpected:
        problems.append(
            f"unexpected keys: {', '.join(unexpected[:5])}{' ...' if len(unexpected) > 5 else ''}"
        )
    if problems:
        raise CheckpointError(f"{source} does not fit the model: " + "; ".join(problems))
    model.load_state_dict(state_dict, strict=True)


def _reference_model(path: Path) -> Segmentor:
    from ladseg.models.convert import load_reference_checkpoint

    return load_reference_checkpoint(path)


def build_model_from_checkpoint(
    path_or_payload: str | Path | dict[str, Any],
) -> tuple[Segmentor, dict[str, Any]]:
    """Rebuild the saved network (ladseg or reference checkpoint) -> (model in eval mode, meta)."""
    if isinstance(path_or_payload, dict):
        payload, path = path_or_payload, None
    else:
        path = Path(path_or_payload)
        payload = load_checkpoint(path)
    if is_ladseg_checkpoint(payload):
        meta = dict(payload["meta"])
        check_format(meta, path)
        if not isinstance(meta.get("spec"), dict):
            raise CheckpointError(f"{path or 'checkpoint'}: meta has no model spec to rebuild the network")
        model = _build_from_spec(meta["spec"], path)
        state = payload["model"]
        if model.in_channels > 3:  # e.g. a reference student converted before dead channels were dropped
            key = first_conv_key(model)
            if key and key in state and dead_input_channels(state[key]):
                meta["spec"] = {**meta["spec"], "in_channels": 3}
                meta["dropped_input_channels"] = model.in_channels - 3
                model = build_model(**meta["spec"])
                state, _ = drop_dead_channels(model, state, None)
        load_model_weights(model, state, meta["spec"], source=str(path or "checkpoint"))
    elif path is not None:
        model = _reference_model(path)
        meta = {**REFERENCE_META, **dict(getattr(model, "meta", {}) or {})}
        meta.update(spec=dict(model.spec), config=None, iteration=None, metrics={})
    else:
        raise CheckpointError(
            "payload is not a ladseg checkpoint (no 'model' and 'meta'); pass a path to import a reference one"
        )
    return model.eval(), meta


def _build_from_spec(spec: dict[str, Any], path: Path | None) -> Segmentor:
    """``build_model(**spec)``; a spec lacking model fields (or with unknown ones) names them."""
    params = inspect.signature(build_model).parameters
    required = [n for n, p in params.items() if p.default is inspect.Parameter.empty]
    missing = [n for n in required if n not in spec]
    unknown = [str(n) for n in spec if n not in params]
    if missing or unknown:
        found = " and ".join(
            ([f"lacks {', '.join(missing)}"] if missing else [])
            + ([f"has unknown fields {', '.join(unknown)}"] if unknown else [])
        )
        raise CheckpointError(
            f"{path or 'checkpoint'} is a torch file with ladseg's layout whose meta.spec {found} "
            f"(a model needs {', '.join(required)}): it cannot rebuild a network"
        )
    return build_model(**spec)


def widen_input_channels(
    model: nn.Module, state_dict: dict[str, torch.Tensor], spec: dict[str, Any] | None
) -> tuple[dict[str, torch.Tensor], dict[str, Any] | None]:
    """Fit an image-only (3-channel) checkpoint to a ``model`` that also reads label channels.

    The extra first-conv channels start at zero, as in the reference's teacher start (it loads the
    trained baseline, whose 4th channel is all zero, into the 4-channel teacher): the network's
    outputs are the baseline's until the label weights learn. A model with a label branch keeps the
    branch's initial weights (scale 0.05; a zero label adds nothing). Anything else is returned unchanged.
    """
    branch = getattr(model, "label_branch", None)
    if branch is not None:  # the label channels have their own branch: it keeps its initial weights
        if any(k.startswith(BRANCH_PREFIX) for k in state_dict) or (spec or {}).get("in_channels", 3) != 3:
            return state_dict, spec
        own_branch = {f"{BRANCH_PREFIX}{k}": v for k, v in branch.state_dict().items()}
        spec = None if spec is None else {**spec, "in_channels": model.in_channels, "label_branch": True}
        return {**state_dict, **own_branch}, spec
    key = first_conv_key(model)
    own = model.state_dict().get(key) if key else None
    weight = state_dict.get(key) if key else None
    if own is None or weight is None or weight.dim() != 4 or weight.shape[1] != 3 or own.shape[1] <= 3:
        return state_dict, spec
    state_dict = {**state_dict, key: adapt_input_conv(weight, int(own.shape[1]), std=0.0)}  # type: ignore[index]
    if spec is not None:
        spec = {**spec, "in_channels": int(own.shape[1])}
    return state_dict, spec


def load_weights_into(model: Segmentor, path: str | Path, widen_input: bool = False) -> dict[str, Any]:
    """Load a ladseg or reference checkpoint into an already built ``model``; returns the meta.

    A dead (all-zero) extra input channel of the checkpoint is dropped for a 3-channel ``model``;
    with ``widen_input`` a 3-channel checkpoint also fits a model with label channels (zero weights).
    """
    path = Path(path)
    payload = load_checkpoint(path)
    if is_ladseg_checkpoint(payload):
        meta = dict(payload["meta"])
        check_format(meta, path)
        state, spec, source = payload["model"], meta.get("spec"), str(path)
    else:
        reference = _reference_model(path)
        state, spec, source = reference.state_dict(), dict(reference.spec), f"{path} (reference)"
        meta = {**REFERENCE_META, "spec": spec}
    state, spec = drop_dead_channels(model, state, spec)
    if widen_input:
        state, spec = widen_input_channels(model, state, spec)
    load_model_weights(model, state, spec, source=source)
    return meta

"""Local pretrained weights: safe reading, first-conv widening, strict loading with clear errors.

LAD (Qiu et al. 2024) feeds the teacher the image plus label channels; the pretrained first
conv only knows 3 channels, so :func:`adapt_input_conv` keeps those 3 exactly and draws the new
ones from N(0, 0.1^2), LAD's rule (timm ``adapt_input_conv`` / smp ``patch_first_conv`` idea).
"""

from __future__ import annotations

import json
import pickle
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from ladseg.errors import CheckpointError

_CONTAINER_KEYS = ("state_dict", "model", "model_state_dict", "net")
_SHOW = 5  # how many offending keys an error message names


def adapt_input_conv(
    weight: Tensor, in_channels: int, std: float = 0.1, generator: torch.Generator | None = None
) -> Tensor:
    """Widen an ``O x 3 x k x k`` pretrained conv weight to ``O x in_channels x k x k``.

    The 3 image channels keep their pretrained values exactly; extra (label) channels are drawn
    from N(0, std^2). A weight that already has ``in_channels`` inputs is returned unchanged.
    """
    if weight.dim() != 4:
        raise CheckpointError(f"expected a 4-d conv weight O x C x k x k, got shape {tuple(weight.shape)}")
    have = weight.shape[1]
    if in_channels == have:
        return weight
    if have != 3:
        raise CheckpointError(
            f"can only widen a 3-channel (RGB) first conv, got one with {have} input channels "
            f"for a model with {in_channels}"
        )
    if in_channels < 3:
        raise CheckpointError(
            f"in_channels={in_channels} is fewer than the 3 image channels of the pretrained conv; "
            "expected 3 (image) or 3 + k (image + label channels)"
        )
    extra_shape = (weight.shape[0], in_channels - 3, *weight.shape[2:])
    extra = torch.randn(extra_shape, generator=generator, dtype=torch.float32) * std
    return torch.cat([weight, extra.to(dtype=weight.dtype, device=weight.device)], dim=1)


def dead_input_channels(weight: Tensor, image_channels: int = 3) -> bool:
    """True when a first-conv weight has channels beyond the image's and all of them are exactly zero.

    The reference code saves every network with a 4-channel first conv, students included; a
    student's 4th channel only ever saw zeros, so its weights stay exactly 0 and dropping them
    changes no output (see :func:`drop_dead_input_channels`). A LAD teacher's label channel starts
    at N(0, 0.1^2), so it is never all zero.
    """
    return (
        weight.dim() == 4 and weight.shape[1] > image_channels and not bool(weight[:, image_channels:].any())
    )


def drop_dead_input_channels(weight: Tensor, image_channels: int = 3) -> Tensor:
    """``weight[:, :image_channels]`` when the extra channels are dead (all zero), else ``weight`` unchanged."""
    return weight[:, :image_channels].clone() if dead_input_channels(weight, image_channels) else weight


def first_conv_key(model: nn.Module) -> str | None:
    """The state-dict name of the weight of ``model.backbone.first_conv`` (None when there is none)."""
    conv = getattr(getattr(model, "backbone", None), "first_conv", None)
    weight = getattr(conv, "weight", None)
    if weight is None:
        return None
    return next((name for name, p in model.named_parameters() if p is weight), None)


def _describe(names: Iterable[str], shapes: Mapping[str, tuple] | None = None) -> str:
    names = list(names)
    shown = [f"{n} {list(shapes[n])}" if shapes and n in shapes else n for n in names[:_SHOW]]
    more = f" (+{len(names) - _SHOW} more)" if len(names) > _SHOW else ""
    return ", ".join(shown) + more


def check_state_dict(module: nn.Module, state_dict: Mapping[str, Tensor], what: str = "weights") -> None:
    """Raise :class:`CheckpointError` naming missing / unexpected / mismatched keys (with shapes)."""
    own = module.state_dict()
    missing = [k for k in own if k not in state_dict]
    unexpected = [k for k in state_dict if k not in own]
    mismatched = [k for k in own if k in state_dict and tuple(own[k].shape) != tuple(state_dict[k].shape)]
    if not (missing or unexpected or mismatched):
        return
    parts = []
    if missing:
        parts.append(f"missing keys: {_describe(missing, {k: tuple(own[k].shape) for k in missing})}")
    if unexpected:
        parts.append(
            "unexpected keys: " + _describe(unexpected, {k: tuple(state_dict[k].shape) for k in unexpected})
        )
    if mismatched:
        shown = [
            f"{k} file {list(state_dict[k].shape)} vs model {list(own[k].shape)}" for k in mismatched[:_SHOW]
        ]
        more = f" (+{len(mismatched) - _SHOW} more)" if len(mismatched) > _SHOW else ""
        parts.append("shape mismatches: " + ", ".join(shown) + more)
    raise CheckpointError(f"{what} do not fit the {type(module).__name__}: " + "; ".join(parts))


def load_pretrained(
    module: nn.Module,
    state_dict: Mapping[str, Tensor],
    *,
    first_conv_key: str,
    in_channels: int,
    ignore_prefixes: tuple[str, ...] = ("fc.", "classifier."),
    strict: bool = True,
) -> None:
    """Load ImageNet-style weights into ``module``, widening the first conv for label channels.

    Keys starting with ``ignore_prefixes`` (the ImageNet classifier) are dropped. With
    ``strict`` every remaining key must match the module by name and shape, else a
    :class:`CheckpointError` lists the first offenders; without it only matching keys load.
    """
    sd = {k: v for k, v in state_dict.items() if not k.startswith(tuple(ignore_prefixes))}
    if first_conv_key in sd:
        sd[first_conv_key] = adapt_input_conv(sd[first_conv_key], in_channels)
    if strict:
        check_state_dict(module, sd, what="pretrained weights")
    else:
        own = module.state_dict()
        sd = {k: v for k, v in sd.items() if k in own and tuple(own[k].shape) == tuple(v.shape)}
    module.load_state_dict(sd, strict=strict)


class UnreadableCheckpoint(CheckpointError):
    """A file that should be a PyTorch file but is empty, truncated or damaged (``what`` says which)."""

    def __init__(self, message: str, what: str) -> None:
        super().__init__(message)
        self.what = what


_ZIP = b"PK\x03\x04"  # torch.save's format since PyTorch 1.6
_PICKLE = 0x80  # the protocol opcode that starts torch's legacy (pre-zip) format
_HEAD = 4096


def identify_non_torch_file(path: Path) -> str | None:
    """What ``path`` is when it is plainly not a PyTorch file (None: it may be one, torch decides).

    These files reach ``torch.load`` by mistake (a web page saved instead of a download, a Git LFS
    pointer of a clone without LFS, an exported ONNX model); torch calls most of them an unsafe
    pickle and advises ``weights_only=False``, which cannot work for them.
    """
    with path.open("rb") as fh:
        head = fh.read(_HEAD)
    if head.startswith(_ZIP) or head[:1] == bytes([_PICKLE]):
        return None
    text = head.lstrip().lower()
    if text.startswith(b"version https://git-lfs"):
        return "a Git LFS pointer, not the file itself (fetch it with 'git lfs pull')"
    if text.startswith((b"<!doctype html", b"<html")) or b"<html" in text[:512]:
        return "an HTML page (a web page saved instead of the file it links to?)"
    if path.suffix.lower() == ".onnx" or (head[:1] == b"\x08" and head[2:3] == b"\x12"):
        # an ONNX ModelProto opens with field 1 (ir_version, a varint) then field 2 (producer_name)
        return "an ONNX model (ladseg reads PyTorch checkpoints; run ONNX files with onnxruntime)"
    if b"\x00" in head:
        return None
    try:
        sample = head.decode("utf-8")
    except UnicodeDecodeError:
        return None
    if text[:1] in (b"{", b"["):
        try:
            json.loads(path.read_text())
            return "a JSON file"
        except (ValueError, UnicodeDecodeError):
            pass
    first = sample.strip().splitlines()[0][:40] if sample.strip() else ""
    return f"a text file (it starts with {first!r})"


def safe_torch_load(path: str | Path, what: str = "checkpoint") -> Any:
    """``torch.load(path, weights_only=True)`` with one set of clear errors for every reader.

    A missing file, a file that is plainly something else (text, JSON, HTML, a Git LFS pointer,
    ONNX), a pickle that needs code to run (refused, never run) and an empty, truncated or damaged
    file each raise :class:`CheckpointError` naming ``what``, the path and what was found (the
    last ones as :class:`UnreadableCheckpoint`, so a resume can fall back to ``last.pth.prev``).
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{what} not found: {str(path)!r} (expected a local .pth file)")
    prev = path.with_name(path.name + ".prev")
    hint = f"; the previous checkpoint {prev} may still be good" if prev.is_file() else ""
    if path.stat().st_size == 0:
        raise UnreadableCheckpoint(f"{what} {str(path)!r} is an empty file (0 bytes){hint}", "an empty file")
    found = identify_non_torch_file(path)
    if found is not None:
        raise CheckpointError(f"{what} {str(path)!r} is not a PyTorch file: it is {found}")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        if "truncated" in str(exc):
            raise UnreadableCheckpoint(
                f"{what} {str(path)!r} is a truncated PyTorch file{hint}", "truncated"
            ) from None
        raise CheckpointError(
            f"refusing to load {what} {str(path)!r}: it is an unsafe pickle that needs code to run "
            f"(torch.load weights_only=True refused: {_refusal(exc)}); "
            "re-save it as plain tensors and data (e.g. a state_dict)"
        ) from None
    except EOFError:
        raise UnreadableCheckpoint(
            f"{what} {str(path)!r} is a truncated PyTorch file{hint}", "truncated"
        ) from None
    except (RuntimeError, OSError, ValueError) as exc:
        damage = "truncated or damaged" if "zip archive" in str(exc) else "unreadable"
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0].split(". This is")[0]
        raise UnreadableCheckpoint(
            f"{what} {str(path)!r} is a {damage} PyTorch file ({first}){hint}", damage
        ) from None


def _refusal(exc: Exception) -> str:
    """The line of torch's weights_only error that names what it refused (not its advice)."""
    lines = [ln.strip() for ln in str(exc).splitlines() if ln.strip()]
    named = [ln for ln in lines if ln.startswith(("WeightsUnpickler error", "Unsupported"))]
    return (named or lines or [type(exc).__name__])[0]


def read_weights_file(path: str | Path) -> dict[str, Tensor]:
    """Read a local ``.pth`` safely (``weights_only=True``) and return a flat name -> tensor dict.

    Unwraps ``{"state_dict": ...}`` / ``{"model": ...}`` containers and strips the ``module.``
    prefix that DataParallel / DDP add. A pickle that needs to run code is refused.
    """
    return unwrap_state_dict(safe_torch_load(path, "weights file"), source=str(path))


def unwrap_state_dict(obj: object, source: str = "checkpoint") -> dict[str, Tensor]:
    """Find the tensor dict inside common checkpoint containers and strip ``module.`` prefixes."""
    for _ in range(3):  # e.g. {"model": {"state_dict": {...}}}
        if isinstance(obj, Mapping) and not _is_tensor_dict(obj):
            inner = next((obj[k] for k in _CONTAINER_KEYS if k in obj and isinstance(obj[k], Mapping)), None)
            if inner is None:
                break
            obj = inner
    if not isinstance(obj, Mapping) or not _is_tensor_dict(obj):
        keys = list(obj)[:_SHOW] if isinstance(obj, Mapping) else type(obj).__name__
        raise CheckpointError(
            f"{source} holds no state dict of tensors (found {keys}); expected name -> tensor, "
            f"possibly inside one of {list(_CONTAINER_KEYS)}"
        )
    out: dict[str, Tensor] = {}
    for key, value in obj.items():
        if not isinstance(key, str):
            raise CheckpointError(
                f"{source} is a torch file whose keys are not parameter names (found the key {key!r}); "
                "expected name -> tensor"
            )
        if not isinstance(value, Tensor):
            continue
        while key.startswith("module."):
            key = key[len("module.") :]
        out[key] = value
    return out


def _is_tensor_dict(obj: Mapping) -> bool:
    return len(obj) > 0 and sum(isinstance(v, Tensor) for v in obj.values()) >= max(1, len(obj) // 2)

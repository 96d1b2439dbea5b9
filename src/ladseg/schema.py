"""The one config validator: raw YAML mappings -> typed dataclasses, each error naming its dotted key.

Every typed part of a config (the engine's sections, a method's parameters, a label encoder, each
distillation loss) is a dataclass, checked here and nowhere else. A leaf module (like ``registry``
and ``errors``), so the methods and losses that declare those dataclasses can use it without
importing the engine. Conventions a dataclass may opt into:

- ``config_tag`` (ClassVar str) and ``config_variant(raw, key) -> type`` (classmethod): a tagged
  union; the mapping's tag (e.g. ``method.name``) picks the dataclass that checks the rest.
- ``check_config(self, key)``: value checks beyond types (choices, ranges), raising
  :class:`~ladseg.errors.ConfigError` with ``key`` in the message.

A number field named ``weight`` or ``*_weight`` is a loss weight everywhere (``method.aux_weight``,
``method.consistency_weight``, ``method.kd_losses[i].weight``, a loss's ``pixel_weight``): it must
be finite and >= 0, since a negative weight rewards the error and a NaN poisons every step.
"""

from __future__ import annotations

import copy
import dataclasses
import math
import types
from typing import Any, TypeVar, Union, get_args, get_origin, get_type_hints

from ladseg.errors import ConfigError

T = TypeVar("T")


def type_name(tp: Any) -> str:
    """How an annotation reads in an error message (``float or null``, ``a list of int``)."""
    if get_origin(tp) in (Union, types.UnionType):
        return " or ".join(type_name(a) for a in get_args(tp))
    if tp is type(None):
        return "null"
    if dataclasses.is_dataclass(tp) or get_origin(tp) is dict:
        return "a mapping"
    if get_origin(tp) is list:
        return f"a list of {type_name(get_args(tp)[0])}"
    return getattr(tp, "__name__", str(tp))


def type_error(key: str, value: Any, tp: Any) -> ConfigError:
    return ConfigError(
        f"config key {key!r}: expected {type_name(tp)}, got {value!r} ({type(value).__name__})"
    )


def coerce(value: Any, tp: Any, key: str) -> Any:
    """Check ``value`` against the annotation ``tp``; return it converted (int -> float, dicts -> dataclasses)."""
    origin = get_origin(tp)
    if origin in (Union, types.UnionType):
        options = [a for a in get_args(tp) if a is not type(None)]
        if value is None and len(options) < len(get_args(tp)):
            return None
        if len(options) == 1:  # Optional[X]: X's own error names the nested key
            return coerce(value, options[0], key)
        for option in options:
            try:
                return coerce(value, option, key)
            except ConfigError:
                continue
        raise type_error(key, value, tp)
    if tp is type(None):
        if value is None:
            return None
        raise type_error(key, value, tp)
    if tp is Any:
        return value
    if dataclasses.is_dataclass(tp):
        if isinstance(value, tp):  # already typed (built in Python): checked again, copied
            value = dataclasses.asdict(value)
        if not isinstance(value, dict):
            raise type_error(key, value, tp)
        return from_mapping(tp, value, key)
    if origin is list:
        if not isinstance(value, (list, tuple)):
            raise type_error(key, value, tp)
        (item,) = get_args(tp)
        return [coerce(v, item, f"{key}[{i}]") for i, v in enumerate(value)]
    if origin is dict:
        if not isinstance(value, dict):
            raise type_error(key, value, tp)
        return copy.deepcopy(value)
    if tp is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if tp is float and isinstance(value, str):  # YAML 1.1 reads 3e-3 (no dot) as a string
        try:
            return float(value)
        except ValueError:
            raise type_error(key, value, tp) from None
    if tp in (int, float) and isinstance(value, bool):
        raise type_error(key, value, tp)
    if isinstance(value, tp):
        return value
    raise type_error(key, value, tp)


def _check_known_keys(cls: type, raw: dict[str, Any], prefix: str) -> None:
    tag = getattr(cls, "config_tag", None)
    names = [f.name for f in dataclasses.fields(cls)]
    unknown = sorted(set(raw) - set(names), key=str)
    if unknown:
        where = f"{prefix}." if prefix else ""
        listed = [n for n in names if n != tag]  # the tag is the section's kind, not one of its keys
        raise ConfigError(
            f"unknown config key {where}{unknown[0]!s}"
            f"{' (and ' + ', '.join(map(str, unknown[1:])) + ')' if len(unknown) > 1 else ''}; "
            f"valid keys{' of ' + prefix if prefix else ''}: {', '.join(listed)}"
        )


def from_mapping(cls: type[T], raw: dict[str, Any], prefix: str = "") -> T:
    """The dataclass ``cls`` (or the variant its tag names) from ``raw``, every value checked.

    An unknown key, a missing required key or a value of the wrong type is a ConfigError naming
    ``prefix.key``; ``check_config`` then checks the values.
    """
    variant = getattr(cls, "config_variant", None)
    if variant is not None:
        cls = variant(raw, prefix)
    hints = get_type_hints(cls)
    _check_known_keys(cls, raw, prefix)
    kwargs = {}
    for f in dataclasses.fields(cls):
        key = f"{prefix}.{f.name}" if prefix else f.name
        if f.name in raw:
            kwargs[f.name] = coerce(raw[f.name], hints[f.name], key)
        elif f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
            raise ConfigError(f"config key {key!r} is required")
    obj = cls(**kwargs)
    _check_loss_weights(obj, prefix)
    check = getattr(obj, "check_config", None)
    if check is not None:
        check(prefix)
    return obj


def _check_loss_weights(obj: Any, prefix: str) -> None:
    """Fields named ``weight`` / ``*_weight`` hold finite numbers >= 0 (see the module docstring)."""
    for f in dataclasses.fields(obj):
        if not (f.name == "weight" or f.name.endswith("_weight")):
            continue
        value = getattr(obj, f.name)
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            continue
        if not (math.isfinite(value) and value >= 0):
            key = f"{prefix}.{f.name}" if prefix else f.name
            raise ConfigError(f"config key {key!r}: a loss weight must be a finite number >= 0, got {value}")


__all__ = ["coerce", "from_mapping", "type_error", "type_name"]

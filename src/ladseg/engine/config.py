"""Configs are data: YAML -> typed dataclasses, ``_base_`` inheritance, dotted overrides.

A config file is a YAML mapping whose sections mirror the dataclasses below. ``_base_`` (a path,
or a list of paths, relative to the file) names configs to deep-merge underneath. Command-line
overrides ``key.sub=value`` are parsed as YAML scalars (``train.iters=100``,
``data.crop_size=[64,64]``). One validator (:mod:`ladseg.schema`) checks every section, the
method's too: ``method.name`` picks the method's parameter dataclass, whose label encoder
(``method.encoder``) and losses (``method.kd_losses[i]``, tagged by ``name``) are typed sections
in turn. An unknown key or a value of the wrong type is a :class:`~ladseg.errors.ConfigError`
naming the dotted key and the expected type, raised when the config is read, before any data is,
so a typo never silently falls back to a default. The resolved config is saved into every run folder.
"""

from __future__ import annotations

import copy
import dataclasses
import inspect
import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from ladseg.config_lookup import find_config
from ladseg.data import DATASETS
from ladseg.data.transforms import NORMALIZATIONS, PAD_MODES
from ladseg.engine.inference_settings import InferenceSettings, OptionStyle
from ladseg.errors import ConfigError
from ladseg.methods.base import METHODS, MethodParams
from ladseg.models.builder import check_model_names
from ladseg.schema import from_mapping


def _default_method() -> MethodParams:
    return METHODS.get("supervised").Params()


@dataclass
class RunConfig:
    name: str = ""
    work_dir: str | None = None  # default: work_dirs/<config stem>
    seed: int = 0
    device: str = "auto"  # "auto" = cuda when available, else cpu

    def check_config(self, key: str) -> None:
        if not re.fullmatch(r"auto|cpu|mps|cuda(:\d+)?", self.device):
            raise ConfigError(
                f"config key '{key}.device': expected auto, cpu, cuda, cuda:N or mps, got {self.device!r}"
            )


@dataclass
class ModelConfig:
    name: str = "deeplabv3"
    backbone: str = "resnet18"
    num_classes: int | None = None  # None: taken from the dataset
    in_channels: int = 3
    aux: bool = True
    output_stride: int = 8
    pretrained: str | None = None
    head: dict[str, Any] = field(default_factory=dict)
    # LAD teacher: the label channels through their own branch added to the backbone's stem output
    # (RITM's Conv1S) instead of a widened first conv; needs in_channels > 3 (models/label_branch.py)
    label_branch: bool = False

    def check_config(self, key: str) -> None:
        try:
            check_model_names(self.name, self.backbone)
        except ConfigError as exc:
            raise ConfigError(f"config key '{key}.name'/'{key}.backbone': {exc}") from None
        if self.output_stride not in OUTPUT_STRIDES:
            raise ConfigError(
                f"config key '{key}.output_stride': expected one of {OUTPUT_STRIDES}, got {self.output_stride}"
            )


@dataclass
class DataConfig:
    dataset: str = "embedded"
    root: str | None = None  # None: the dataset's default root
    train_split: str = "train"
    val_split: str = "val"
    crop_size: list[int] = field(default_factory=lambda: [512, 512])
    scale_range: list[float] = field(default_factory=lambda: [0.5, 2.0])
    # Resize every image (and mask, nearest) by this ratio before anything else, in training and
    # evaluation alike: e.g. 0.5 trains and evaluates CamVid at 180 x 240 (labels resized too).
    resize_ratio: float = 1.0
    flip: bool = True
    photometric: bool = False
    # Where a rescaled image is smaller than the crop: ``mean`` colour (0 after normalisation, as the
    # reference pads its mean-subtracted input) or ``black`` (before normalising); the mask gets ignore.
    pad: str = "mean"
    normalize: str = "imagenet"
    batch_size: int = 16
    num_workers: int = 4
    kwargs: dict[str, Any] = field(default_factory=dict)

    def check_config(self, key: str) -> None:
        """Values beyond types (called by the config validator when the config is read)."""
        if self.pad not in PAD_MODES:
            raise ConfigError(f"config key '{key}.pad': expected one of {PAD_MODES}, got {self.pad!r}")
        check_choice(f"{key}.normalize", self.normalize, tuple(NORMALIZATIONS))
        check_choice(f"{key}.dataset", self.dataset, tuple(DATASETS.names()))
        accepted = inspect.signature(DATASETS.get(self.dataset)).parameters
        if not any(p.kind is inspect.Parameter.VAR_KEYWORD for p in accepted.values()):
            options = sorted(set(accepted) - {"root", "split", "transform"})
            for name in self.kwargs:
                if name not in options:
                    raise ConfigError(
                        f"config key '{key}.kwargs.{name}': dataset {self.dataset!r} has no such option; "
                        f"valid: {', '.join(options) or 'none'}"
                    )


@dataclass
class TeacherConfig:
    """The frozen teacher of a distillation method: a model section or another run's config."""

    model: ModelConfig | None = None
    config: str | None = None  # path to the teacher's YAML; its model section is used
    checkpoint: str | None = None
    in_channels: int | None = None  # overrides model.in_channels (e.g. 3 + k for a LAD teacher)


@dataclass
class OptimConfig:
    name: str = "sgd"  # sgd (the field's recipe) | adamw (faster start for short runs; momentum unused)
    lr: float = 0.01
    momentum: float = 0.9
    weight_decay: float = 1e-4
    poly_power: float = 0.9
    warmup_iters: int = 0
    warmup_ratio: float = 0.1
    head_lr_mult: float = 1.0  # lr multiplier for everything outside the backbone

    def check_config(self, key: str) -> None:
        check_choice(f"{key}.name", self.name, OPTIMIZER_NAMES)


@dataclass
class TrainConfig:
    iters: int = 40000
    val_interval: int = 800
    log_interval: int = 50
    checkpoint_interval: int = 1000
    # none | bf16 | fp16 | auto (bf16/fp16 on CUDA, none on CPU: bf16 cost accuracy there; engine/amp.py)
    amp: str = "auto"
    # auto | true | false; auto = what measured fastest on the device (ladseg.engine.acceleration):
    # channels_last on; compile on CUDA when the run is long enough to repay it, never on the CPU
    channels_last: bool | str = "auto"
    compile: bool | str = "auto"
    init_checkpoint: str | None = None  # start the trained network from these weights (fine-tuning)
    tensorboard: bool = False
    resume: bool = True  # continue from work_dir/last.pth when present
    # Multi-process runs (torchrun): SyncBatchNorm on the trained modules; None = on for CUDA,
    # off on CPU (PyTorch's SyncBatchNorm needs a GPU). DDP's find_unused_parameters.
    sync_bn: bool | None = None
    find_unused_parameters: bool = False
    # Validate and save an exponential moving average of the weights (e.g. 0.99); None = off.
    ema_decay: float | None = None

    def check_config(self, key: str) -> None:
        check_choice(f"{key}.amp", self.amp, AMP_MODES)
        for name in ("channels_last", "compile"):
            if getattr(self, name) not in (True, False, "auto"):
                raise ConfigError(
                    f"config key '{key}.{name}': expected true, false or auto, got {getattr(self, name)!r}"
                )


@dataclass
class EvalConfig(InferenceSettings):
    """How validation and ``ladseg eval`` run: the inference settings (mode, window, scales, ...;
    :mod:`ladseg.engine.inference_settings`) and the batch size; the window defaults to
    ``data.crop_size``."""

    batch_size: int = 1

    def check_config(self, key: str) -> None:
        """Values beyond types (called by the config validator when the config is read)."""
        self.check(OptionStyle(key))


@dataclass
class Config:
    run: RunConfig = field(default_factory=RunConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    method: MethodParams = field(default_factory=_default_method)  # typed by method.name
    teacher: TeacherConfig = field(default_factory=TeacherConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)

    @property
    def method_name(self) -> str:
        return self.method.name

    @property
    def method_params(self) -> dict[str, Any]:
        """The method's parameters as a plain mapping (``name`` left out), as ``build_method`` takes them."""
        return {k: v for k, v in dataclasses.asdict(self.method).items() if k != "name"}

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


#: the optimisers ``optim.name`` may name (built by ``engine/builders.py:OPTIMIZERS``)
OPTIMIZER_NAMES = ("sgd", "adamw")
OUTPUT_STRIDES = (8, 16, 32)

AMP_MODES = ("none", "bf16", "fp16", "auto")


def check_choice(key: str, value: Any, allowed: tuple[str, ...]) -> None:
    """``value`` is one of ``allowed``, or a ConfigError naming ``key`` and the choices."""
    if value not in allowed:
        raise ConfigError(f"config key {key!r}: expected one of {', '.join(allowed)}, got {value!r}")


def check_values(cfg: Config) -> None:
    """The checks that span sections or apply to many keys alike: pair lengths, counts and numbers in
    their range (a value out of its range is a ConfigError naming the key, before any data is read).
    A section's own choices are its ``check_config``."""
    pairs = {
        "data.crop_size": cfg.data.crop_size,
        "data.scale_range": cfg.data.scale_range,
    }
    for key, value in pairs.items():
        if value is not None and len(value) != 2:
            raise ConfigError(f"config key {key!r}: expected two values [h, w] / [lo, hi], got {value!r}")
    positive = {
        "train.iters": cfg.train.iters,
        "train.val_interval": cfg.train.val_interval,
        "train.log_interval": cfg.train.log_interval,
        "train.checkpoint_interval": cfg.train.checkpoint_interval,
        "data.batch_size": cfg.data.batch_size,
        "eval.batch_size": cfg.eval.batch_size,
    }
    for key, value in positive.items():
        if value <= 0:
            raise ConfigError(f"config key {key!r}: expected a positive integer, got {value}")
    if min(cfg.data.crop_size) <= 0:
        raise ConfigError(
            f"config key 'data.crop_size': expected two positive integers [h, w], got {cfg.data.crop_size!r}"
        )
    if cfg.eval.crop_size is None:  # the sliding window defaults to the training crop
        cfg.eval.check_window(cfg.data.crop_size, OptionStyle("eval"))
    lo, hi = cfg.data.scale_range
    if not 0 < lo <= hi < math.inf:
        raise ConfigError(
            f"config key 'data.scale_range': expected 0 < lo <= hi, got {cfg.data.scale_range!r}"
        )
    ranges: dict[str, tuple[float | None, Any, str]] = {  # key: (value, test, what it must be)
        "optim.lr": (cfg.optim.lr, lambda v: v > 0, "a number > 0"),
        "optim.weight_decay": (cfg.optim.weight_decay, lambda v: v >= 0, "a number >= 0"),
        "optim.momentum": (cfg.optim.momentum, lambda v: 0 <= v < 1, "a number in [0, 1)"),
        "optim.poly_power": (cfg.optim.poly_power, lambda v: v >= 0, "a number >= 0"),
        "optim.warmup_iters": (cfg.optim.warmup_iters, lambda v: v >= 0, "an integer >= 0"),
        "optim.warmup_ratio": (cfg.optim.warmup_ratio, lambda v: 0 <= v <= 1, "a number in [0, 1]"),
        "optim.head_lr_mult": (cfg.optim.head_lr_mult, lambda v: v >= 0, "a number >= 0"),
        "data.num_workers": (cfg.data.num_workers, lambda v: v >= 0, "an integer >= 0"),
        "model.in_channels": (cfg.model.in_channels, lambda v: v >= 1, "an integer >= 1"),
        "model.num_classes": (cfg.model.num_classes, lambda v: v >= 1, "an integer >= 1 or null"),
        "teacher.in_channels": (cfg.teacher.in_channels, lambda v: v >= 1, "an integer >= 1 or null"),
        "run.seed": (cfg.run.seed, lambda v: abs(v) < 2**63, "a 64-bit integer"),
    }
    for key, (value, test, what) in ranges.items():
        if value is not None and not (math.isfinite(value) and test(value)):
            raise ConfigError(f"config key {key!r}: expected {what}, got {value}")
    branches = {"model": (cfg.model, cfg.model.in_channels)}
    if cfg.teacher.model is not None:
        branches["teacher.model"] = (
            cfg.teacher.model,
            cfg.teacher.in_channels or cfg.teacher.model.in_channels,
        )
    for key, (section, channels) in branches.items():
        if section.label_branch and channels <= 3:
            raise ConfigError(
                f"config key '{key}.label_branch': a label branch reads the label channels after the 3 image "
                f"channels, but the network reads {channels}; set {key}.in_channels to 3 + the label channels "
                "(a LAD teacher) or leave label_branch false"
            )
    if not 0 < cfg.data.resize_ratio < math.inf:
        raise ConfigError(
            f"config key 'data.resize_ratio': expected a number > 0, got {cfg.data.resize_ratio}"
        )
    if cfg.train.ema_decay is not None and not 0.0 < cfg.train.ema_decay < 1.0:
        raise ConfigError(
            f"config key 'train.ema_decay': expected a number in (0, 1) or null, got {cfg.train.ema_decay}"
        )


# -- files, inheritance and overrides -----------------------------------------------------------
def deep_merge(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    """``override`` on top of ``base``; mappings merge key by key, anything else replaces."""
    out = copy.deepcopy(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = deep_merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def load_yaml_tree(path: str | Path, _seen: tuple[Path, ...] = ()) -> dict[str, Any]:
    """Read a YAML config and its ``_base_`` chain into one raw mapping."""
    path = Path(path).resolve()
    if path in _seen:
        raise ConfigError(f"_base_ cycle: {' -> '.join(str(p) for p in (*_seen, path))}")
    if not path.is_file():
        raise ConfigError(f"config file not found: {path}")
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML: {exc}") from exc
    except UnicodeDecodeError as exc:
        raise ConfigError(
            f"{path}: not a text file (UTF-8 expected: {exc.reason} at byte {exc.start})"
        ) from exc
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: expected a YAML mapping at the top level")
    _anchor_teacher_config(raw, path.parent)
    bases = raw.pop("_base_", [])
    bases = [bases] if isinstance(bases, str) else list(bases)
    merged: dict[str, Any] = {}
    for base in bases:
        merged = deep_merge(merged, load_yaml_tree(path.parent / base, (*_seen, path)))
    return deep_merge(merged, raw)


def _anchor_teacher_config(raw: dict[str, Any], config_dir: Path) -> None:
    """A relative ``teacher.config`` names a file beside the YAML that writes it, so a config that
    inherits it from a ``_base_`` in another folder still finds it."""
    teacher = raw.get("teacher")
    if isinstance(teacher, dict) and isinstance(teacher.get("config"), str):
        beside = config_dir / teacher["config"]
        if not Path(teacher["config"]).is_absolute() and beside.is_file():
            teacher["config"] = str(beside)


def parse_override(text: str) -> tuple[list[str], Any]:
    """``"a.b=value"`` -> (["a", "b"], YAML-parsed value)."""
    if "=" not in text:
        raise ConfigError(f"override {text!r}: expected key.sub=value")
    key, value = text.split("=", 1)
    parts = key.strip().split(".")
    if not all(parts):
        raise ConfigError(f"override {text!r}: empty key part")
    try:
        parsed = yaml.safe_load(value) if value.strip() else None
    except yaml.YAMLError as exc:
        raise ConfigError(f"override {text!r}: value is not valid YAML ({exc})") from exc
    return parts, parsed


def apply_overrides(raw: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    out = copy.deepcopy(raw)
    for text in overrides:
        parts, value = parse_override(text)
        node = out
        for i, part in enumerate(parts[:-1]):
            if not isinstance(node.get(part), dict):
                if node.get(part) is not None:
                    raise ConfigError(f"override {text!r}: {'.'.join(parts[: i + 1])} is not a section")
                node[part] = {}
            node = node[part]
        node[parts[-1]] = value
    return out


def config_from_dict(raw: dict[str, Any]) -> Config:
    """Typed, checked config from a raw mapping (unknown keys and wrong types are errors)."""
    cfg = from_mapping(Config, raw)
    check_values(cfg)
    return cfg


def _resolve_teacher(raw: dict[str, Any], config_dir: Path) -> None:
    """Inline the model section of ``teacher.config`` so the saved config stands on its own."""
    teacher = raw.get("teacher")
    if not isinstance(teacher, dict) or not teacher.get("config") or teacher.get("model"):
        return
    candidate = Path(teacher["config"])
    if not candidate.is_absolute() and not candidate.is_file():
        candidate = config_dir / candidate
    teacher_raw = load_yaml_tree(candidate)
    teacher["model"] = teacher_raw.get("model", {})


def load_config(path: str | Path, overrides: list[str] | None = None) -> Config:
    """Read ``path`` (with its ``_base_`` chain), apply dotted overrides, type-check, fill defaults.

    ``path`` is a user's file or the name of a packaged config (see :func:`ladseg.config_lookup.find_config`).
    """
    path = find_config(path)
    raw = apply_overrides(load_yaml_tree(path), list(overrides or []))
    _resolve_teacher(raw, path.resolve().parent)
    cfg = config_from_dict(raw)
    if not cfg.run.name:
        cfg.run.name = path.stem
    if cfg.run.work_dir is None:
        cfg.run.work_dir = str(Path("work_dirs") / path.stem)
    return cfg


def save_config(cfg: Config, path: str | Path) -> None:
    Path(path).write_text(yaml.safe_dump(cfg.to_dict(), sort_keys=False))


def inference_settings(cfg: Config) -> InferenceSettings:
    """The settings validation and ``ladseg eval`` run with: the ``eval`` section, its window
    defaulting to ``data.crop_size``."""
    return cfg.eval.with_window(cfg.data.crop_size)

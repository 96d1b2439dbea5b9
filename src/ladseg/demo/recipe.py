"""The demo recipe: which configs the stages use, per-profile overrides, and each stage's config.

A recipe is data (``configs/_recipes_/demo.yaml`` and its siblings, shipped inside the package).
Besides its own teacher and LAD student, a recipe may name label *variants*: more LAD teachers, each
with its own label encoding and its own student (stages ``teacher_<name>``, ``student_<name>``), beside
the same baseline and control, so that one report compares label inputs at the cost of their
teachers alone.
This module only reads it; :mod:`ladseg.demo.pipeline` trains and evaluates the stages and
:mod:`ladseg.demo.report` writes what they gave, so neither imports the other.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from ladseg.config_lookup import DEFAULT_RECIPE, find_config
from ladseg.engine.builders import method_class
from ladseg.engine.config import Config, load_config
from ladseg.engine.metrics import SegMetrics
from ladseg.errors import ConfigError

STAGES = ("baseline", "teacher", "student", "control")
#: every stage a recipe may list: the four above and ``self_distill`` (the student's loss and
#: fine-tuning with the baseline itself as the teacher)
ALL_STAGES = (*STAGES, "self_distill")
FINETUNE_STAGES = ("student", "control", "self_distill")
#: rows of the result table: (row name, stage whose checkpoint is evaluated, method overrides)
ROWS: tuple[tuple[str, str, dict[str, Any] | None], ...] = (
    ("baseline", "baseline", None),
    ("control", "control", None),
    ("teacher (with labels)", "teacher", {"eval_label": "fixed"}),
    ("teacher (no labels)", "teacher", {"eval_label": "none"}),
    ("teacher (random codes)", "teacher", {"eval_label": "random"}),
    ("LAD student", "student", None),
    ("self-distillation", "self_distill", None),
)


@dataclass(frozen=True)
class LabelVariant:
    """One more LAD teacher (its own label input) and the LAD student distilled from it."""

    teacher: Path
    student: Path


@dataclass
class DemoRecipe:
    """What a recipe file holds: the three configs, per-profile overrides and the label variants.

    ``stages`` lists every stage in training order, the variants' ``teacher_<name>`` and
    ``student_<name>`` last.
    """

    baseline: Path
    teacher: Path
    student: Path
    profiles: dict[str, dict[str, list[str]]] = field(default_factory=dict)
    stages: tuple[str, ...] = STAGES
    variants: dict[str, LabelVariant] = field(default_factory=dict)

    def __post_init__(self) -> None:
        extra = tuple(f"{kind}_{name}" for name in self.variants for kind in ("teacher", "student"))
        self.stages = tuple(s for s in self.stages if s in ALL_STAGES) + extra

    def split_stage(self, stage: str) -> tuple[str, str | None]:
        """``("student", "boundary")`` for ``student_boundary``; ``("student", None)`` for ``student``."""
        if stage in ALL_STAGES:
            return stage, None
        kind, _, name = stage.partition("_")
        if kind not in ("teacher", "student") or name not in self.variants:
            raise ConfigError(f"unknown demo stage {stage!r}; this recipe's stages: {list(self.stages)}")
        return kind, name

    def rows(self) -> list[tuple[str, str, dict[str, Any] | None]]:
        """The result table's rows (name, stage, method overrides): :data:`ROWS`, then each variant's."""
        rows = [r for r in ROWS if r[1] in self.stages]
        for name in self.variants:
            rows += [
                (f"teacher {name} (with labels)", f"teacher_{name}", {"eval_label": "fixed"}),
                (f"teacher {name} (no labels)", f"teacher_{name}", {"eval_label": "none"}),
                (f"LAD student {name}", f"student_{name}", None),
            ]
        return rows

    def overrides(self, profile: str, stage: str) -> list[str]:
        """The profile's overrides of one stage (``common`` first, ``finetune`` for the fine-tunings;
        a variant's stages take those of the stage they stand beside)."""
        if profile not in self.profiles:
            raise ConfigError(f"unknown demo profile {profile!r}; valid: {sorted(self.profiles)}")
        kind = self.split_stage(stage)[0]
        prof = self.profiles[profile]
        extra = prof.get("finetune", []) if kind in FINETUNE_STAGES else prof.get(kind, [])
        return [*prof.get("common", []), *extra]


@dataclass
class SeedResult:
    """What one seed of the demo gave: each row's metrics and each stage's training seconds."""

    seed: int
    run_dir: Path
    metrics: dict[str, SegMetrics]
    seconds: dict[str, float]
    class_names: list[str]


def read_recipe_file(path: str | Path, what: str) -> tuple[Path, dict[str, Any]]:
    """Find a recipe (the user's file or a packaged one) and read its YAML mapping; ``what`` names it
    in the errors (``demo recipe``, ``benchmark recipe``)."""
    try:
        found = find_config(path)
    except ConfigError:
        raise ConfigError(f"{what} {path} not found") from None
    try:
        return found, yaml.safe_load(found.read_text()) or {}
    except yaml.YAMLError as exc:
        raise ConfigError(f"{found} is not valid YAML: {exc}") from exc


def load_recipe(path: str | Path = DEFAULT_RECIPE) -> DemoRecipe:
    """Read a recipe: a user's file, or a packaged one (``_recipes_/camvid.yaml``); configs it names
    are relative to the recipe file."""
    path, raw = read_recipe_file(path, "demo recipe")
    unknown = sorted(set(raw) - {"configs", "profiles", "stages", "variants"})
    if "methods" in raw and "protocols" in raw:
        raise ConfigError(f"{path} is a distillation-benchmark recipe: run it with `ladseg kd-bench {path}`")
    if unknown:
        raise ConfigError(f"{path}: unknown key(s) {unknown}; valid: configs, profiles, stages, variants")
    stages = tuple(raw.get("stages") or STAGES)
    if not set(STAGES) <= set(stages) or not set(stages) <= set(ALL_STAGES):
        raise ConfigError(
            f"{path}: stages must hold {list(STAGES)} and may add 'self_distill'; got {list(stages)}"
        )
    cfgs = raw.get("configs") or {}
    missing = [k for k in ("baseline", "teacher", "student") if k not in cfgs]
    if missing:
        raise ConfigError(f"{path}: configs.{missing[0]} is missing")
    variants: dict[str, LabelVariant] = {}
    for name, entry in (raw.get("variants") or {}).items():
        if not re.fullmatch(r"[a-z0-9]+", str(name)):
            raise ConfigError(f"{path}: variant name {name!r} must be lower-case letters and digits")
        if not isinstance(entry, dict) or set(entry) != {"teacher", "student"}:
            raise ConfigError(
                f"{path}: variants.{name} must be a mapping with exactly 'teacher' and 'student'"
            )
        variants[str(name)] = LabelVariant(path.parent / entry["teacher"], path.parent / entry["student"])
    return DemoRecipe(
        **{k: path.parent / cfgs[k] for k in ("baseline", "teacher", "student")},
        profiles={
            name: {k: list(v) for k, v in (p or {}).items()}
            for name, p in (raw.get("profiles") or {}).items()
        },
        stages=tuple(s for s in ALL_STAGES if s in stages),
        variants=variants,
    )


def stage_config(
    recipe: DemoRecipe, stage: str, run_dir: Path, seed: int, profile: str, extra: list[str]
) -> Config:
    """The config of one stage of one seed (a run folder per stage).

    The control is the student's fine-tuning without the teacher: besides the start, iterations and
    learning rate it takes the student's auxiliary-head weight (the LAD student uses 0.02, the
    baseline 0.4), so that the teacher's loss term is the only difference between the two. One
    control serves every variant's student too, so theirs must be the same weight.
    """
    kind, variant = recipe.split_stage(stage)
    chosen = recipe.variants[variant] if variant else recipe
    base = {
        "baseline": recipe.baseline, "teacher": chosen.teacher, "student": chosen.student,
        "control": recipe.baseline, "self_distill": recipe.student,
    }  # fmt: skip
    matched: list[str] = []
    if stage == "control":
        matched = [f"method.aux_weight={_aux_weight(recipe, 'student', profile, extra)}"]
    overrides = [
        f"run.work_dir={run_dir / stage}",
        f"run.seed={seed}",
        *recipe.overrides(profile, stage),
        *matched,
        *extra,
    ]
    if kind in FINETUNE_STAGES:
        overrides.append(f"train.init_checkpoint={run_dir / 'baseline' / 'last.pth'}")
    if kind == "student":
        overrides.append(
            f"teacher.checkpoint={run_dir / stage.replace('student', 'teacher', 1) / 'last.pth'}"
        )
    if kind == "student" and variant:
        own, shared = (_aux_weight(recipe, s, profile, extra) for s in (stage, "student"))
        if own != shared:
            raise ConfigError(
                f"variant {variant}: its student's method.aux_weight ({own}) differs from the recipe's student's "
                f"({shared}); one control serves both, so they must be equal"
            )
    if stage == "self_distill":  # the teacher is the baseline checkpoint itself (its own spec, no label)
        overrides += [
            "teacher.config=null",
            "teacher.model=null",
            f"teacher.checkpoint={run_dir / 'baseline' / 'last.pth'}",
        ]
    return load_config(base[kind], overrides)


def _aux_weight(recipe: DemoRecipe, stage: str, profile: str, extra: list[str]) -> float:
    """The auxiliary-head weight of a (variant's) LAD student under the profile's overrides."""
    _, variant = recipe.split_stage(stage)
    chosen = recipe.variants[variant] if variant else recipe
    cfg = load_config(chosen.student, [*recipe.overrides(profile, stage), *extra])
    return method_class(cfg.method_name).parse_params(cfg.method_params).aux_weight

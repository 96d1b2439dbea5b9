"""The demo recipe: which configs the stages use, per-profile overrides, and each stage's config.

A recipe is data (``configs/_recipes_/demo.yaml`` and its siblings, shipped inside the package).
This module only reads it; :mod:`ladseg.demo.pipeline` trains and evaluates the stages and
:mod:`ladseg.demo.report` writes what they gave, so neither imports the other.
"""

from __future__ import annotations

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


@dataclass
class DemoRecipe:
    """What a recipe file holds: the three configs and per-profile overrides."""

    baseline: Path
    teacher: Path
    student: Path
    profiles: dict[str, dict[str, list[str]]] = field(default_factory=dict)
    stages: tuple[str, ...] = STAGES

    def overrides(self, profile: str, stage: str) -> list[str]:
        """The profile's overrides of one stage (``common`` first, ``finetune`` for the fine-tunings)."""
        if profile not in self.profiles:
            raise ConfigError(f"unknown demo profile {profile!r}; valid: {sorted(self.profiles)}")
        prof = self.profiles[profile]
        extra = prof.get("finetune", []) if stage in FINETUNE_STAGES else prof.get(stage, [])
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
    unknown = sorted(set(raw) - {"configs", "profiles", "stages"})
    if "methods" in raw and "protocols" in raw:
        raise ConfigError(f"{path} is a distillation-benchmark recipe: run it with `ladseg kd-bench {path}`")
    if unknown:
        raise ConfigError(f"{path}: unknown key(s) {unknown}; valid: configs, profiles, stages")
    stages = tuple(raw.get("stages") or STAGES)
    if not set(STAGES) <= set(stages) or not set(stages) <= set(ALL_STAGES):
        raise ConfigError(
            f"{path}: stages must hold {list(STAGES)} and may add 'self_distill'; got {list(stages)}"
        )
    cfgs = raw.get("configs") or {}
    missing = [k for k in ("baseline", "teacher", "student") if k not in cfgs]
    if missing:
        raise ConfigError(f"{path}: configs.{missing[0]} is missing")
    return DemoRecipe(
        **{k: path.parent / cfgs[k] for k in ("baseline", "teacher", "student")},
        profiles={
            name: {k: list(v) for k, v in (p or {}).items()}
            for name, p in (raw.get("profiles") or {}).items()
        },
        stages=tuple(s for s in ALL_STAGES if s in stages),
    )


def stage_config(
    recipe: DemoRecipe, stage: str, run_dir: Path, seed: int, profile: str, extra: list[str]
) -> Config:
    """The config of one stage of one seed (a run folder per stage).

    The control is the student's fine-tuning without the teacher: besides the start, iterations and
    learning rate it takes the student's auxiliary-head weight (the LAD student uses 0.02, the
    baseline 0.4), so that the teacher's loss term is the only difference between the two.
    """
    base = {
        "baseline": recipe.baseline, "teacher": recipe.teacher, "student": recipe.student,
        "control": recipe.baseline, "self_distill": recipe.student,
    }  # fmt: skip
    matched: list[str] = []
    if stage == "control":
        student = stage_config(recipe, "student", run_dir, seed, profile, extra)
        matched = [
            f"method.aux_weight={method_class(student.method_name).parse_params(student.method_params).aux_weight}"
        ]
    overrides = [
        f"run.work_dir={run_dir / stage}",
        f"run.seed={seed}",
        *recipe.overrides(profile, stage),
        *matched,
        *extra,
    ]
    if stage in FINETUNE_STAGES:
        overrides.append(f"train.init_checkpoint={run_dir / 'baseline' / 'last.pth'}")
    if stage == "student":
        overrides.append(f"teacher.checkpoint={run_dir / 'teacher' / 'last.pth'}")
    if stage == "self_distill":  # the teacher is the baseline checkpoint itself (its own spec, no label)
        overrides += [
            "teacher.config=null",
            "teacher.model=null",
            f"teacher.checkpoint={run_dir / 'baseline' / 'last.pth'}",
        ]
    return load_config(base[stage], overrides)

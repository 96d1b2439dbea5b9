"""The demo's stages, for one seed::

    baseline  = train(student config, supervised)                     # the plain student
    teacher   = train(teacher config, lad_teacher)                    # image + label channel, dual path
    student   = train(distill config, init=baseline, teacher=teacher) # LAD student, fine-tuned
    control   = train(student config, init=baseline, same iters/lr)   # extra training, no teacher

then every model is evaluated on the held-out split (the teacher twice: with its fixed-code label
channel and with a zero channel). The control exists because the reference fine-tunes a trained
baseline: extra training alone must not be mistaken for the method's gain, so the reported gain
is *LAD student minus control*. All models are taken at their last iteration (no checkpoint is
picked on the validation split that is reported).

The recipe (which configs, how many iterations, the quick profile) is data:
``configs/_recipes_/demo.yaml``.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from ladseg.engine.builders import method_class
from ladseg.engine.checkpoint_eval import evaluate_checkpoint
from ladseg.engine.config import load_config
from ladseg.engine.logging import read_metrics
from ladseg.engine.metrics import SegMetrics
from ladseg.engine.trainer import train
from ladseg.errors import ConfigError

#: the repository's configs folder (the demo recipe and the configs it names live there)
CONFIG_DIR = Path(__file__).resolve().parents[3] / "configs"
DEFAULT_RECIPE = CONFIG_DIR / "_recipes_" / "demo.yaml"

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
    """What ``configs/_recipes_/demo.yaml`` holds: the three configs and per-profile overrides."""

    baseline: Path
    teacher: Path
    student: Path
    profiles: dict[str, dict[str, list[str]]] = field(default_factory=dict)
    stages: tuple[str, ...] = STAGES

    def overrides(self, profile: str, stage: str) -> list[str]:
        if profile not in self.profiles:
            raise ConfigError(f"unknown demo profile {profile!r}; valid: {sorted(self.profiles)}")
        prof = self.profiles[profile]
        extra = prof.get("finetune", []) if stage in FINETUNE_STAGES else prof.get(stage, [])
        return [*prof.get("common", []), *extra]


def load_recipe(path: str | Path = DEFAULT_RECIPE) -> DemoRecipe:
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"demo recipe {path} not found")
    try:
        raw = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path} is not valid YAML: {exc}") from exc
    unknown = sorted(set(raw) - {"configs", "profiles", "stages"})
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
) -> Any:
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


def training_seconds(work_dir: Path) -> float:
    """Seconds the stage spent in training steps, from its own log (a reused or resumed stage counts
    what it really took, not this invocation's time); validation is not included."""
    seconds, last = 0.0, 0
    for record in read_metrics(work_dir):
        if record["type"] == "train" and record.get("s_per_iter") is not None:
            seconds += record["s_per_iter"] * (record["iter"] - last)
            last = record["iter"]
    return seconds


@dataclass
class SeedResult:
    seed: int
    run_dir: Path
    metrics: dict[str, SegMetrics]
    seconds: dict[str, float]
    class_names: list[str]


def run_seed(
    recipe: DemoRecipe, out: Path, seed: int, profile: str = "default", extra: list[str] | None = None
) -> SeedResult:
    """Train the four stages of one seed (a finished stage is reused) and evaluate them."""
    run_dir = out / f"seed{seed}"
    seconds: dict[str, float] = {}
    for stage in recipe.stages:
        print(f"\n== seed {seed}: {stage} ==", flush=True)
        train(stage_config(recipe, stage, run_dir, seed, profile, extra or []))
        seconds[stage] = training_seconds(run_dir / stage)
    metrics: dict[str, SegMetrics] = {}
    class_names: list[str] = []
    for row, stage, params in ROWS:
        if stage not in recipe.stages:
            continue
        cfg = stage_config(recipe, stage, run_dir, seed, profile, extra or [])
        m, dataset = evaluate_checkpoint(
            cfg, run_dir / stage / "last.pth", method_params=params, progress=False
        )
        metrics[row] = m
        class_names = list(dataset.classes)
    return SeedResult(seed, run_dir, metrics, seconds, class_names)


def run_demo(
    out: str | Path = "runs/demo",
    seeds: int = 1,
    quick: bool = False,
    recipe_path: str | Path = DEFAULT_RECIPE,
    extra: list[str] | None = None,
) -> dict[str, Any]:
    """Run the demo for ``seeds`` seeds and write the report folder; returns the summary dict."""
    from ladseg.demo.report import write_report

    t0 = time.perf_counter()
    recipe = load_recipe(recipe_path)
    profile = "quick" if quick else "default"
    out = Path(out)
    results = [run_seed(recipe, out, seed, profile, extra) for seed in range(seeds)]
    summary = write_report(results, out / "report", recipe, profile, extra or [], time.perf_counter() - t0)
    return summary

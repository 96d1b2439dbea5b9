"""The distillation benchmark: every method of the library against one fair control, per protocol.

A benchmark recipe (``configs/_recipes_/camvid_kd.yaml``) names a student network, a strong teacher,
a config per distillation method and two protocols, each with its own control::

    teacher          = train(teacher config)                        # once, shared by seeds and methods
    lad_teacher      = train(LAD teacher config)                    # once (optional: the LAD row)
    lad_teacher_<n>  = train(lad_teachers[n])                       # once each (rows that name one)
    per seed:
      baseline       = train(student config)                        # the plain student
      finetune/      # LAD's protocol: N more iterations from the trained baseline
        control      = train(student config, init=baseline)         # the same N, no teacher
        self_distill = train(self-distillation config, init=baseline, teacher=baseline)
        <method>     = train(method config, init=baseline, teacher=teacher)
        control_time_<method> = the control with that student stage's wall-clock (``--time-matched``;
                                its step cost against the control's measured in turns, once)
      scratch/       # CIRKD's protocol: the full schedule from the student's initialisation
        <method>     = train(method config, teacher=teacher)        # control: the baseline itself

Every model is scored at its last iteration on the recipe's validation split; a method's row
reports its mIoU and its difference to its protocol's control, paired by seed, with the standard
error of that difference. A finished stage is reused and an unfinished one resumes from its
``last.pth``, so seeds (or methods) can run as separate processes and a killed run continues.
"""

from __future__ import annotations

import json
import math
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ladseg.demo.pipeline import training_seconds
from ladseg.demo.recipe import read_recipe_file
from ladseg.demo.report import gap_text, mean_std, paired_gap, verdict_word
from ladseg.engine.checkpoint_eval import evaluate_checkpoint
from ladseg.engine.config import Config, load_config
from ladseg.engine.logging import read_metrics
from ladseg.engine.step_cost import training_step_seconds
from ladseg.engine.trainer import train
from ladseg.errors import ConfigError

PROTOCOLS = ("finetune", "scratch")
#: the control row of each protocol (a stage of the seed's folder)
CONTROL = {"finetune": "finetune/control", "scratch": "baseline"}
#: ``<protocol>/<TIME_MATCHED><method>``: the control given the wall-clock of that method's student stage
TIME_MATCHED = "control_time_"
#: timed rounds (after untimed warm-up ones) of the step-cost measurement behind a time-matched control
STEP_COST_ROUNDS, STEP_COST_WARMUP = 20, 3
LAD = "lad"  # the method name of the LAD student (its teacher is the recipe's LAD teacher)


def reads_lad_teacher(row: str) -> bool:
    """``lad`` and its variants ``lad_<name>`` (another loss, another LAD teacher) distil a LAD teacher."""
    return row == LAD or row.startswith(LAD + "_")


#: the folder of the shared teacher, the default LAD teacher and a named one (``lad_teachers``)
TEACHER, LAD_TEACHER = "teacher", "lad_teacher"


#: the thin classes a CamVid report names (looked up by name; absent names are skipped)
THIN_CLASSES = ("pole", "sign", "pedestrian", "bicyclist")
_RECIPE_KEYS = {
    "student", "teacher", "lad_teacher", "lad_teachers", "self_distill", "methods", "method_stages", "protocols",
    "profiles",
}  # fmt: skip
#: the folder of a method's own stage on the shared teacher (``out/<method>_stage``)
METHOD_STAGE = "{}_stage"


@dataclass
class MethodStage:
    """A stage a method trains once on the shared teacher before its students (MasKD's receptive
    tokens): ``config`` starts from the teacher's ``last.pth``; its ``last.pth`` fills the option
    ``fills`` of every ``kd_losses`` entry of the method's config that has that option."""

    config: Path
    fills: str


@dataclass
class BenchRecipe:
    """What a benchmark recipe holds (paths are resolved against the recipe's folder)."""

    student: Path
    teacher: Path
    methods: dict[str, Path]
    protocols: dict[str, list[str]]
    self_distill: Path | None = None
    lad_teacher: Path | None = None
    #: more LAD teachers by name (one-hot, a corrupted one-hot...): each trained once, in ``out/lad_teacher_<name>``
    lad_teachers: dict[str, Path] = field(default_factory=dict)
    #: the rows that distil a named LAD teacher instead of ``lad_teacher`` (``methods.<row>.lad_teacher``)
    row_lad_teachers: dict[str, str] = field(default_factory=dict)
    method_stages: dict[str, MethodStage] = field(default_factory=dict)
    profiles: dict[str, dict[str, list[str]]] = field(default_factory=dict)

    def teacher_folder(self, row: str) -> str:
        """The folder under ``out`` of the teacher ``row`` distils: ``teacher``, ``lad_teacher`` or
        ``lad_teacher_<name>``."""
        if row in self.row_lad_teachers:
            return f"{LAD_TEACHER}_{self.row_lad_teachers[row]}"
        return LAD_TEACHER if reads_lad_teacher(row) else TEACHER

    def lad_teacher_configs(self) -> dict[str, Path]:
        """Every LAD teacher's config by its folder (``lad_teacher``, ``lad_teacher_<name>``)."""
        folders = {f"{LAD_TEACHER}_{name}": cfg for name, cfg in self.lad_teachers.items()}
        return {**({LAD_TEACHER: self.lad_teacher} if self.lad_teacher else {}), **folders}

    def overrides(self, profile: str, kind: str) -> list[str]:
        """The profile's ``common`` overrides, then those of ``kind`` (teacher, baseline, finetune...)."""
        if profile not in self.profiles:
            raise ConfigError(f"unknown benchmark profile {profile!r}; valid: {sorted(self.profiles)}")
        prof = self.profiles[profile]
        return [*prof.get("common", []), *prof.get(kind, [])]


def load_bench_recipe(path: str | Path) -> BenchRecipe:
    """Read and check a benchmark recipe (every method a protocol lists must have a config)."""
    path, raw = read_recipe_file(path, "benchmark recipe")
    unknown = sorted(set(raw) - _RECIPE_KEYS)
    if unknown:
        raise ConfigError(f"{path}: unknown key(s) {unknown}; valid: {sorted(_RECIPE_KEYS)}")
    for key in ("student", "teacher", "methods", "protocols"):
        if not raw.get(key):
            raise ConfigError(f"{path}: {key} is missing")
    here = path.parent
    lad_teachers = {name: here / cfg for name, cfg in (raw.get("lad_teachers") or {}).items()}
    methods, row_lad_teachers = {}, {}
    # each method: a config path, or {config: <yaml>, lad_teacher: <a name in lad_teachers>}
    for name, spec in raw["methods"].items():
        if isinstance(spec, dict):
            if set(spec) != {"config", "lad_teacher"} or not reads_lad_teacher(name):
                raise ConfigError(
                    f"{path}: methods.{name}: expected a config path, or {{config: <yaml>, lad_teacher: <name>}} "
                    f"for a row named {LAD} or {LAD}_<x>"
                )
            if spec["lad_teacher"] not in lad_teachers:
                raise ConfigError(
                    f"{path}: methods.{name}.lad_teacher: {spec['lad_teacher']!r} is not in lad_teachers "
                    f"{sorted(lad_teachers)}"
                )
            row_lad_teachers[name] = str(spec["lad_teacher"])
            spec = spec["config"]
        methods[name] = here / spec
    protocols = {name: list(ms or []) for name, ms in raw["protocols"].items()}
    for proto, listed in protocols.items():
        if proto not in PROTOCOLS:
            raise ConfigError(f"{path}: unknown protocol {proto!r}; valid: {list(PROTOCOLS)}")
        missing = [m for m in listed if m not in methods]
        if missing:
            raise ConfigError(f"{path}: protocols.{proto} lists {missing}, which methods does not define")
    lad_rows = [m for m in methods if reads_lad_teacher(m) and m not in row_lad_teachers]
    if lad_rows and not raw.get("lad_teacher"):
        raise ConfigError(f"{path}: method(s) {lad_rows} need lad_teacher (the LAD teacher's config)")
    method_stages = {}
    for name, spec in (raw.get("method_stages") or {}).items():
        if name not in methods:
            raise ConfigError(f"{path}: method_stages.{name}: no such method in methods")
        if not isinstance(spec, dict) or set(spec) != {"config", "fills"}:
            raise ConfigError(
                f"{path}: method_stages.{name}: expected {{config: <yaml>, fills: <loss option>}}"
            )
        method_stages[name] = MethodStage(here / spec["config"], str(spec["fills"]))
    return BenchRecipe(
        student=here / raw["student"],
        teacher=here / raw["teacher"],
        methods=methods,
        protocols=protocols,
        self_distill=here / raw["self_distill"] if raw.get("self_distill") else None,
        lad_teacher=here / raw["lad_teacher"] if raw.get("lad_teacher") else None,
        lad_teachers=lad_teachers,
        row_lad_teachers=row_lad_teachers,
        method_stages=method_stages,
        profiles={
            name: {k: list(v) for k, v in (p or {}).items()}
            for name, p in (raw.get("profiles") or {}).items()
        },
    )


@dataclass
class Bench:
    """One benchmark run: a recipe, its output folder, a profile and the user's overrides."""

    recipe: BenchRecipe
    out: Path
    profile: str = "default"
    extra: list[str] = field(default_factory=list)

    # ----------------------------------------------------------------- stage configs
    def teacher_config(self, folder: str = TEACHER) -> Config:
        """The shared teacher or a LAD teacher (by its folder): trained once, seed 0, in ``out/<folder>``;
        every LAD teacher takes the profile's ``lad_teacher`` overrides."""
        if folder == TEACHER:
            return self._shared_config(self.recipe.teacher, TEACHER, TEACHER)
        return self._shared_config(self.recipe.lad_teacher_configs()[folder], folder, LAD_TEACHER)

    def stage_config(self, seed: int, stage: str) -> Config:
        """The config of one stage of one seed: ``baseline``, ``finetune/<row>`` or ``scratch/<method>``."""
        run_dir = self.out / f"seed{seed}"
        common = [f"run.work_dir={run_dir / stage}", f"run.seed={seed}"]
        if stage == "baseline":
            return self._load(self.recipe.student, common, "baseline")
        protocol, row = stage.split("/", 1)
        kind = "finetune" if protocol == "finetune" else "baseline"  # scratch runs the baseline's schedule
        overrides = list(common)
        if protocol == "finetune":
            overrides.append(f"train.init_checkpoint={run_dir / 'baseline' / 'last.pth'}")
        if row == "control":
            return self._load(self.recipe.student, overrides, kind)
        if row.startswith(TIME_MATCHED):  # as many seconds of plain steps as the method's stage took
            method = row[len(TIME_MATCHED) :]
            plain = self._load(self.recipe.student, overrides, kind)
            iters = self.time_matched_iters(seed, protocol, method, plain.train.iters)
            return self._load(self.recipe.student, overrides, kind, [f"train.iters={iters}"])
        if row == "self_distill":
            if self.recipe.self_distill is None:
                raise ConfigError("the recipe has no self_distill config")
            overrides += [
                "teacher.config=null",
                "teacher.model=null",
                f"teacher.checkpoint={run_dir / 'baseline' / 'last.pth'}",
            ]
            return self._load(self.recipe.self_distill, overrides, kind)
        teacher = self.out / self.recipe.teacher_folder(row) / "last.pth"
        overrides.append(f"teacher.checkpoint={teacher}")
        if row in self.recipe.method_stages:
            overrides.append(self._filled_losses(row))
        return self._load(self.recipe.methods[row], overrides, kind)

    def method_stage_config(self, method: str) -> Config:
        """``method``'s own stage on the shared teacher (seed 0, ``out/<method>_stage``)."""
        init = f"train.init_checkpoint={self.out / 'teacher' / 'last.pth'}"
        config = self.recipe.method_stages[method].config
        return self._shared_config(config, METHOD_STAGE.format(method), "method_stage", [init])

    def _shared_config(self, path: Path, folder: str, kind: str, more: list[str] | None = None) -> Config:
        """A stage trained once for every seed (seed 0, in ``out/<folder>``): ``more``, then the
        profile's overrides for ``kind``, then the user's."""
        return load_config(
            path,
            [
                f"run.work_dir={self.out / folder}",
                "run.seed=0",
                *(more or []),
                *self.recipe.overrides(self.profile, kind),
                *self.extra,
            ],
        )

    def _filled_losses(self, method: str) -> str:
        """The override that points the method's losses at its stage's ``last.pth``."""
        stage = self.recipe.method_stages[method]
        entries = [
            dict(e) for e in load_config(self.recipe.methods[method]).method_params.get("kd_losses") or []
        ]
        filled = str(self.out / METHOD_STAGE.format(method) / "last.pth")
        if not any(stage.fills in e for e in entries):
            raise ConfigError(f"method {method!r}: none of its kd_losses has the option {stage.fills!r}")
        entries = [{**e, stage.fills: filled} if stage.fills in e else e for e in entries]
        return f"method.kd_losses={json.dumps(entries)}"

    def _load(self, path: Path, overrides: list[str], kind: str, last: list[str] | None = None) -> Config:
        # the user's overrides after the profile's, so a user can change a schedule
        return load_config(
            path, [*overrides, *self.recipe.overrides(self.profile, kind), *self.extra, *(last or [])]
        )

    def time_matched_iters(self, seed: int, protocol: str, method: str, iters: int) -> int:
        """Plain iterations that take the wall-clock of ``method``'s student stage in ``protocol``:
        ``iters`` x (its seconds per step / its control's), from :meth:`step_cost`."""
        return max(iters, round(iters * self.step_cost(seed, protocol, method)["ratio"]))

    def step_cost(self, seed: int, protocol: str, method: str) -> dict[str, Any]:
        """Seconds per step of ``method``'s student and of its protocol's plain stage, measured in turns
        under one load (:func:`training_step_seconds`: two runs' logs time each under a different load).
        Measured once per protocol and method, on the first seed that asks, and kept in
        :meth:`step_cost_path`: every seed and a resumed run use the same ratio. Needs the teacher
        trained and, in finetune, the seed's baseline."""
        path = self.step_cost_path(protocol, method)
        if path.is_file():
            return json.loads(path.read_text())
        configs = [
            self.stage_config(seed, f"{protocol}/{method}"),
            self.stage_config(seed, CONTROL[protocol]),
        ]
        for cfg in configs:
            for ckpt in (cfg.train.init_checkpoint, cfg.teacher.checkpoint):
                if ckpt and not Path(ckpt).is_file():
                    raise ConfigError(f"the time-matched control of {method} needs {ckpt} trained first")
        print(
            f"== timing {method}'s step against {CONTROL[protocol]}'s, in turns ({protocol}) ==", flush=True
        )
        method_s, control_s = training_step_seconds(configs, STEP_COST_ROUNDS, STEP_COST_WARMUP)
        cost = {
            "method_s_per_step": method_s,
            "control_s_per_step": control_s,
            "ratio": method_s / control_s,
            "rounds": STEP_COST_ROUNDS,
            "seed": seed,
        }
        _write_json(path, cost)
        return cost

    def step_cost_path(self, protocol: str, method: str) -> Path:
        """Where :meth:`step_cost` keeps ``method``'s step cost in ``protocol``."""
        return self.out / "step_cost" / f"{protocol}_{method}.json"

    def stages(
        self, protocols: list[str], methods: list[str] | None = None, time_matched: list[str] | None = None
    ) -> list[str]:
        """The stages of one seed for these protocols (and, if given, only these methods); each method
        in ``time_matched`` adds, in each protocol, a control with its student stage's wall-clock."""
        stages = ["baseline"]
        for proto in protocols:
            rows = [m for m in self.recipe.protocols.get(proto, []) if methods is None or m in methods]
            if proto == "finetune":
                rows = ["control", *(["self_distill"] if self.recipe.self_distill else []), *rows]
            rows += [TIME_MATCHED + m for m in time_matched or []]
            stages += [f"{proto}/{row}" for row in rows]
        return stages

    # ----------------------------------------------------------------- running
    def run_teachers(self, methods: list[str] | None = None) -> None:
        """Train the shared teacher, the LAD teachers the rows ``methods`` distil, then the stages
        ``methods`` train on the teacher once; finished ones are reused."""
        self._train("teacher (shared by every seed and method)", self.teacher_config(), self.out / TEACHER)
        for folder in sorted({self.recipe.teacher_folder(m) for m in methods or []} - {TEACHER}):
            self._train(f"LAD teacher {folder} (shared)", self.teacher_config(folder), self.out / folder)
        for method in methods or []:
            if method in self.recipe.method_stages:
                self._train(
                    f"{method}: its stage on the teacher (shared by every seed)",
                    self.method_stage_config(method),
                    self.out / METHOD_STAGE.format(method),
                )

    def run_seed(self, seed: int, stages: list[str]) -> None:
        for stage in stages:
            self._train(
                f"seed {seed}: {stage}", self.stage_config(seed, stage), self.out / f"seed{seed}" / stage
            )

    def _train(self, title: str, cfg: Config, work_dir: Path) -> None:
        """Train a stage unless it has finished: a finished stage is only read, so processes running
        other seeds or methods can share the teacher and the baselines."""
        if self.finished(work_dir, cfg):
            print(f"== {title}: finished, reused", flush=True)
            return
        print(f"\n== {title} ==", flush=True)
        train(cfg)

    # ----------------------------------------------------------------- scoring
    def finished(self, work_dir: Path, cfg: Config) -> bool:
        """Whether a stage's run reached its last iteration and logged its final validation."""
        if not (work_dir / "last.pth").exists():
            return False
        return any(r.get("type") == "val" and r["iter"] >= cfg.train.iters for r in read_metrics(work_dir))

    def score(self, cfg: Config, work_dir: Path, params: dict[str, Any] | None = None) -> dict[str, Any]:
        """mIoU and per-class IoU (percent) of a finished stage, cached in ``work_dir/score*.json``."""
        tag = "" if not params else "_" + "_".join(f"{k}-{v}" for k, v in sorted(params.items()))
        cache = work_dir / f"score{tag}.json"
        ckpt = work_dir / "last.pth"
        if cache.exists() and cache.stat().st_mtime >= ckpt.stat().st_mtime:
            return json.loads(cache.read_text())
        metrics, dataset = evaluate_checkpoint(cfg, ckpt, method_params=params, progress=False)
        result = {
            "mIoU": metrics.miou * 100,
            "IoU": {
                c: (None if math.isnan(v) else float(v) * 100)
                for c, v in zip(dataset.classes, metrics.iou.tolist(), strict=True)
            },
            "seconds": training_seconds(work_dir),
        }
        _write_json(cache, result)
        return result


def _write_json(path: Path, obj: dict[str, Any]) -> None:
    """Write ``obj`` as JSON through a temporary file: a killed write never leaves half a cache behind."""
    path.parent.mkdir(parents=True, exist_ok=True)
    staged = path.with_suffix(".json.tmp")
    staged.write_text(json.dumps(obj, indent=1))
    os.replace(staged, path)


def summarize(
    bench: Bench, seeds: list[int], protocols: list[str], time_matched: list[str] | None = None
) -> dict[str, Any]:
    """Score every finished stage; per protocol, each row's mean ± std and its paired gap to the control."""
    summary: dict[str, Any] = {
        "seeds": seeds,
        "profile": bench.profile,
        "overrides": bench.extra,
        "teachers": {},
    }
    tcfg = bench.teacher_config()
    if bench.finished(bench.out / "teacher", tcfg):
        summary["teachers"]["teacher"] = bench.score(tcfg, bench.out / "teacher")
    for folder in bench.recipe.lad_teacher_configs():
        lcfg = bench.teacher_config(folder)
        if bench.finished(bench.out / folder, lcfg):
            with_label = bench.score(lcfg, bench.out / folder, {"eval_label": "fixed"})
            without = bench.score(lcfg, bench.out / folder, {"eval_label": "none"})
            summary["teachers"][folder] = {
                **with_label, "mIoU_no_label": without["mIoU"], "label_gap": with_label["mIoU"] - without["mIoU"],
                "encoding": lcfg.method.encoder.kind,
            }  # fmt: skip
    scores: dict[str, dict[int, dict[str, Any]]] = {}
    for seed in seeds:
        for stage in bench.stages(protocols, time_matched=time_matched):
            work_dir = bench.out / f"seed{seed}" / stage
            if not (work_dir / "last.pth").exists():
                continue
            cfg = bench.stage_config(seed, stage)
            if bench.finished(work_dir, cfg):
                scores.setdefault(stage, {})[seed] = bench.score(cfg, work_dir)
    summary["protocols"] = {}
    for proto in protocols:
        control = CONTROL[proto]
        rows: dict[str, Any] = {}
        listed = bench.stages([proto], time_matched=time_matched)
        for stage in [s for s in listed if s == control or s.startswith(proto + "/")]:
            if stage not in scores:
                continue
            per_seed = scores[stage]
            mean, std = mean_std([per_seed[s]["mIoU"] for s in sorted(per_seed)])
            paired = [s for s in sorted(per_seed) if s in scores.get(control, {})]
            row = {
                "seeds": sorted(per_seed),
                "mIoU": mean,
                "mIoU_std": std,
                "mIoU_per_seed": [per_seed[s]["mIoU"] for s in sorted(per_seed)],
                "seconds": mean_std([per_seed[s]["seconds"] for s in sorted(per_seed)])[0],
                "IoU": {
                    c: mean_std(
                        [per_seed[s]["IoU"][c] for s in per_seed if per_seed[s]["IoU"][c] is not None]
                    )[0]
                    for c in next(iter(per_seed.values()))["IoU"]
                },
            }
            if stage != control and paired:
                row["vs_control"] = paired_gap(
                    [per_seed[s]["mIoU"] - scores[control][s]["mIoU"] for s in paired]
                )
            rows[stage.split("/", 1)[-1] if stage != "baseline" else "baseline"] = row
        for name, row in rows.items():  # a method against the control given its own wall-clock
            matched = scores.get(f"{proto}/{TIME_MATCHED}{name}", {})
            paired = [s for s in row["seeds"] if s in matched]
            if paired:
                own = dict(zip(row["seeds"], row["mIoU_per_seed"], strict=True))
                row["vs_time_matched"] = paired_gap([own[s] - matched[s]["mIoU"] for s in paired])
                cost = bench.step_cost_path(proto, name)
                if cost.is_file():  # an OUT folder written before step costs were kept has none
                    row["step_cost"] = json.loads(cost.read_text())
        summary["protocols"][proto] = {"control": control.split("/")[-1], "rows": rows}
    return summary


PROTOCOL_TITLES = {
    "finetune": "Protocol (a), LAD's: fine-tune the trained baseline; control = the same extra iterations without a teacher",
    "scratch": "Protocol (b), CIRKD's: the full schedule from the student's initialisation; control = the baseline",
}


def markdown(summary: dict[str, Any]) -> str:
    """The report's tables: the teachers, then one table per protocol."""
    lines: list[str] = []
    t = summary["teachers"]
    if "teacher" in t:
        lines.append(
            f"Strong teacher: **{t['teacher']['mIoU']:.2f} mIoU** ({t['teacher']['seconds']:.0f} s of training, once)."
        )
    for folder, lad in t.items():
        if folder == TEACHER:
            continue
        name = "LAD teacher" + (f" {folder[len(LAD_TEACHER) + 1 :]}" if folder != LAD_TEACHER else "")
        encoding = f", {lad['encoding']}" if "encoding" in lad else ""
        lines.append(
            f"{name}: {lad['mIoU']:.2f} with its label (fixed codes{encoding}), {lad['mIoU_no_label']:.2f} with a "
            f"zero channel: label-use gap **{lad['label_gap']:+.2f}** ({lad['seconds']:.0f} s of training, once)."
        )
    for proto, block in summary["protocols"].items():
        rows = block["rows"]
        if not rows:
            continue
        names = next(iter(rows.values()))["IoU"]
        thin = [c for c in THIN_CLASSES if c in names]
        head = ["row", "seeds", "mIoU (mean ± std)", "− control (± SE)", "verdict", "s / seed", *thin]
        lines += [
            "",
            f"### {PROTOCOL_TITLES[proto]}",
            "",
            "| " + " | ".join(head) + " |",
            "|" + "---|" * len(head),
        ]
        for name, r in rows.items():
            gap = r.get("vs_control")
            if gap is None:
                diff, verdict = "(control)" if name == block["control"] else "-", ""
            else:
                se = "" if math.isnan(gap["stderr"]) else f" ± {gap['stderr']:.2f}"
                diff = f"{gap['mean']:+.2f}{se}"
                verdict = verdict_word(gap)
            cells = [name, str(len(r["seeds"])), f"{r['mIoU']:.2f} ± {r['mIoU_std']:.2f}", diff, verdict,
                     f"{r['seconds']:.0f}", *[f"{r['IoU'][c]:.1f}" for c in thin]]  # fmt: skip
            lines.append("| " + " | ".join(cells) + " |")
        best = max(
            (
                (n, r["vs_control"])
                for n, r in rows.items()
                if "vs_control" in r and n != "self_distill" and not n.startswith(TIME_MATCHED)  # controls
            ),
            key=lambda item: item[1]["mean"],
            default=None,
        )
        if best is not None:
            lines.append(
                f"\nBest method: **{best[0]}**, {gap_text(best[1], len(best[1]['per_seed']))} over the control."
            )
        for name, r in rows.items():
            if "vs_time_matched" in r:
                gap = r["vs_time_matched"]
                ratio = f", a step {r['step_cost']['ratio']:.2f}x the plain one's" if "step_cost" in r else ""
                lines.append(
                    f"\n{name} against the control given its wall-clock ({TIME_MATCHED}{name}{ratio}): "
                    f"{gap_text(gap, len(gap['per_seed']))}, {verdict_word(gap)}."
                )
    return "\n".join(lines)


def write_bench_report(summary: dict[str, Any], out: Path, seconds: float) -> None:
    """``report.md`` and ``report.json`` under ``out``; prints the tables."""
    out.mkdir(parents=True, exist_ok=True)
    text = markdown(summary)
    header = (
        "# ladseg distillation benchmark\n\n"
        "Validation split; every model at its last iteration (its weight average where the config sets "
        "train.ema_decay). Differences are paired by seed; the standard error is that of the paired "
        "difference; verdict: gain or loss where it exceeds 2 standard errors, noise otherwise.\n\n"
    )
    (out / "report.md").write_text(header + text + f"\n\nThis invocation's wall time: {seconds:.0f} s.\n")
    (out / "report.json").write_text(json.dumps(summary, indent=2))
    print("\n" + text)
    print(f"\nreport: {out / 'report.md'}")


def run_bench(
    recipe_path: str | Path,
    out: str | Path,
    seeds: list[int],
    protocols: list[str] | None = None,
    methods: list[str] | None = None,
    quick: bool = False,
    extra: list[str] | None = None,
    train_stages: bool = True,
    time_matched: list[str] | None = None,
) -> dict[str, Any]:
    """Train what is missing (teachers first, then each seed's stages) and write the report."""
    t0 = time.perf_counter()
    recipe = load_bench_recipe(recipe_path)
    protocols = protocols or [p for p in PROTOCOLS if p in recipe.protocols]
    bad = [m for m in [*(methods or []), *(time_matched or [])] if m not in recipe.methods]
    if bad:
        raise ConfigError(f"unknown method(s) {bad}; the recipe defines {sorted(recipe.methods)}")
    bench = Bench(recipe, Path(out), "quick" if quick else "default", list(extra or []))
    if train_stages:
        stages = bench.stages(protocols, methods, time_matched)
        bench.run_teachers(sorted({s.rsplit("/", 1)[-1] for s in stages}))
        for seed in seeds:
            bench.run_seed(seed, stages)
    summary = summarize(bench, seeds, protocols, time_matched)
    write_bench_report(summary, Path(out) / "report", time.perf_counter() - t0)
    return summary

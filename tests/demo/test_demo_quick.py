"""CI smoke test of ``ladseg demo --quick``: the whole pipeline runs and its report is sane.

It checks that the report exists and that the numbers are well-formed, not that LAD wins (the
quick profile trains for a few iterations only).
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

from ladseg.cli import main
from ladseg.config_lookup import RECIPE_DIR
from ladseg.demo.pipeline import training_seconds
from ladseg.demo.recipe import load_recipe, stage_config
from ladseg.demo.report import markdown_table, summarize, teacher_encoding_line
from ladseg.engine.builders import method_class
from ladseg.engine.config import load_yaml_tree
from ladseg.errors import ConfigError


def test_quick_demo_writes_a_sane_report(tmp_path: Path, capsys) -> None:
    out = tmp_path / "demo"
    assert main(["demo", "--quick", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    report = out / "report"
    for name in ("report.md", "report.json", "curves.png", "predictions.png"):
        assert (report / name).stat().st_size > 0, name
    summary = json.loads((report / "report.json").read_text())
    recipe = load_recipe()
    assert list(summary["rows"]) == [row for row, _, _ in recipe.rows()]
    assert recipe.variants, "the default demo shows a label variant beside the reference encoding"
    for row in summary["rows"].values():
        assert 0.0 <= row["mIoU"] <= 100.0
        assert set(row["IoU"]) == set(summary["class_names"])
    gain = summary["rows"]["LAD student"]["mIoU"] - summary["rows"]["control"]["mIoU"]
    assert math.isclose(summary["gain_vs_control"]["mean"], gain, abs_tol=1e-6)
    assert "LAD student − control" in printed and "teacher (no labels)" in printed
    label_use = (
        summary["rows"]["teacher (with labels)"]["mIoU"] - summary["rows"]["teacher (no labels)"]["mIoU"]
    )
    assert math.isclose(summary["label_use"]["mean"], label_use, abs_tol=1e-6)
    assert "Teacher with (fixed codes) − without its label channel" in printed
    assert "Teacher label encoding: `" in (report / "report.md").read_text()
    for name in recipe.variants:  # each variant's teacher and student, against the shared control
        gaps = summary["variants"][name]
        row = summary["rows"][f"LAD student {name}"]["mIoU"]
        assert math.isclose(
            gaps["gain_vs_control"]["mean"], row - summary["rows"]["control"]["mIoU"], abs_tol=1e-6
        )
        assert f"Teacher {name} with − without its label channel" in printed
        assert f"Teacher {name} label encoding: `" in (report / "report.md").read_text()
    # every stage ran and saved its last checkpoint
    for stage in recipe.stages:
        assert (out / "seed0" / stage / "last.pth").is_file(), stage


# demo recipes (a kd-bench recipe, with methods and protocols, is tested in test_kd_benchmark.py)
RECIPES = sorted(p for p in RECIPE_DIR.glob("*.yaml") if "protocols:" not in p.read_text())


@pytest.mark.parametrize("recipe_path", RECIPES, ids=lambda p: p.stem)
def test_student_and_control_share_the_finetuning_recipe(tmp_path: Path, recipe_path: Path) -> None:
    """The control differs from the LAD student only by the teacher: same start, iterations and lr."""
    recipe = load_recipe(recipe_path)
    for profile in recipe.profiles:
        student = stage_config(recipe, "student", tmp_path, 0, profile, [])
        control = stage_config(recipe, "control", tmp_path, 0, profile, [])
        assert student.train.iters == control.train.iters
        assert student.optim.lr == control.optim.lr
        assert (
            student.train.init_checkpoint
            == control.train.init_checkpoint
            == str(tmp_path / "baseline" / "last.pth")
        )
        assert student.model == control.model
        aux = [
            method_class(c.method_name).parse_params(c.method_params).aux_weight for c in (student, control)
        ]
        assert aux[0] == aux[1] == 0.02  # the student's auxiliary weight, not the baseline's 0.4
        assert student.eval == control.eval
        assert student.method_name == "distill" and control.method_name == "supervised"
        assert student.teacher.checkpoint == str(tmp_path / "teacher" / "last.pth")
        for name in recipe.variants:  # a variant's student: the same fine-tuning, its own teacher
            other = stage_config(recipe, f"student_{name}", tmp_path, 0, profile, [])
            assert (other.train, other.optim, other.model, other.eval) == (
                student.train,
                student.optim,
                student.model,
                student.eval,
            )
            assert method_class(other.method_name).parse_params(other.method_params).aux_weight == aux[0]
            assert other.teacher.checkpoint == str(tmp_path / f"teacher_{name}" / "last.pth")
        if "self_distill" in recipe.stages:  # the student's loss and fine-tuning, the baseline as teacher
            own = stage_config(recipe, "self_distill", tmp_path, 0, profile, [])
            assert own.method == student.method and own.train == student.train and own.optim == student.optim
            assert own.teacher.checkpoint == str(tmp_path / "baseline" / "last.pth")
            assert own.teacher.model is None  # built from the checkpoint's own (3-channel) spec


def test_bad_recipe_is_a_clear_error(tmp_path: Path) -> None:
    bad = tmp_path / "r.yaml"
    bad.write_text("configs: {baseline: a.yaml}\n")
    with pytest.raises(ConfigError, match="configs.teacher is missing"):
        load_recipe(bad)
    demo = (RECIPE_DIR / "demo.yaml").read_text()
    configs = demo[demo.index("configs:") : demo.index("stages:")].replace("../", f"{RECIPE_DIR.parent}/")
    bad.write_text(configs + "variants: {edges: {teacher: t.yaml}}\n")
    with pytest.raises(ConfigError, match="variants.edges must be a mapping with exactly"):
        load_recipe(bad)
    bad.write_text(configs + "variants: {Edge_1: {teacher: t.yaml, student: s.yaml}}\n")
    with pytest.raises(ConfigError, match="variant name 'Edge_1'"):
        load_recipe(bad)
    with pytest.raises(ConfigError, match="unknown demo stage 'student_nope'"):
        load_recipe().overrides("quick", "student_nope")
    # a variant's student must share the control's auxiliary weight: one control serves every student
    demo_dir = RECIPE_DIR.parent / "demo"
    (tmp_path / "s.yaml").write_text(
        f"_base_: {demo_dir}/lad_student_stdc1_embedded.yaml\nmethod: {{aux_weight: 0.4}}\n"
    )
    teacher = demo_dir / "lad_teacher_stdc1_boundary_embedded.yaml"
    bad.write_text(
        configs + f"profiles: {{quick: {{}}}}\nvariants: {{edges: {{teacher: {teacher}, student: s.yaml}}}}\n"
    )
    recipe = load_recipe(bad)
    with pytest.raises(ConfigError, match=r"variant edges: its student's method.aux_weight \(0.4\) differs"):
        stage_config(recipe, "student_edges", tmp_path, 0, "quick", [])
    with pytest.raises(ConfigError, match="unknown demo profile"):
        load_recipe().overrides("nope", "baseline")


def fake_seed(values: dict[str, float], seed: int = 0) -> SimpleNamespace:
    """A stand-in for one seed's result: each row's mIoU (fraction) also as every class's IoU."""
    metrics = {k: SimpleNamespace(miou=v, iou=torch.tensor([v, v])) for k, v in values.items()}
    return SimpleNamespace(seed=seed, class_names=["a", "b"], metrics=metrics, seconds={"baseline": 1.0})


def test_report_says_when_the_teacher_ignores_its_label() -> None:
    """The gain over the control is only label assistance when the teacher reads its label."""

    def seed(teacher_with: float, teacher_without: float) -> SimpleNamespace:
        return fake_seed({"baseline": 0.30, "control": 0.32, "teacher (with labels)": teacher_with,
                          "teacher (no labels)": teacher_without, "LAD student": 0.34})  # fmt: skip

    blind = summarize([seed(0.40, 0.399)])
    assert blind["label_use"]["mean"] == pytest.approx(0.1)
    assert "barely uses its label channel" in markdown_table(blind)
    aware = summarize([seed(0.80, 0.20)])
    assert aware["label_use"]["mean"] == pytest.approx(60.0)
    assert "barely uses" not in markdown_table(aware)


def test_report_says_whether_the_gain_stands_out_of_seed_noise() -> None:
    def seed(i: int, control: float, student: float) -> SimpleNamespace:
        return fake_seed({"baseline": 0.30, "control": control, "LAD student": student}, i)

    steady = summarize([seed(0, 0.40, 0.42), seed(1, 0.45, 0.472), seed(2, 0.38, 0.398)])
    assert steady["gain_vs_control"]["stderr"] == pytest.approx(0.2 / 3**0.5, rel=1e-6)
    assert "More than 2 standard errors (SE 0.12) from zero: a gain" in markdown_table(steady)
    worse = summarize([seed(0, 0.42, 0.40), seed(1, 0.472, 0.45), seed(2, 0.398, 0.38)])
    assert "from zero: a loss" in markdown_table(worse)
    noisy = summarize([seed(0, 0.46, 0.39), seed(1, 0.37, 0.45), seed(2, 0.31, 0.44)])
    assert "not distinguishable from seed-to-seed noise" in markdown_table(noisy)
    assert "seed-to-seed spread is unknown" in markdown_table(summarize([seed(0, 0.40, 0.42)]))


@pytest.mark.parametrize("recipe_path", RECIPES, ids=lambda p: p.stem)
def test_report_names_the_teacher_encoding_of_the_recipe(recipe_path: Path) -> None:
    recipe = load_recipe(recipe_path)
    encoder = load_yaml_tree(recipe.teacher)["method"].get("encoder") or {}  # the file as written
    line = teacher_encoding_line(recipe)
    assert f"`{encoder.get('kind', 'random_codes')}`" in line
    for key, value in (encoder.get("corruption") or {}).items():
        if key.endswith("_prob") and value > 0:
            assert f"{key} {value}" in line


def test_report_gives_the_gain_over_self_distillation_and_both_label_gaps() -> None:
    def seed(i: int, own: float) -> SimpleNamespace:
        return fake_seed({"baseline": 0.30, "control": 0.33, "teacher (with labels)": 0.50, "teacher (no labels)": 0.35,
                          "teacher (random codes)": 0.55, "LAD student": 0.36, "self-distillation": own}, i)  # fmt: skip

    summary = summarize([seed(0, 0.34), seed(1, 0.35), seed(2, 0.33)])
    over = summary["gain_vs_self_distill"]
    assert over["per_seed"] == pytest.approx([2.0, 1.0, 3.0]) and over["stderr"] == pytest.approx(1 / 3**0.5)
    assert summary["label_use"]["mean"] == pytest.approx(15.0)
    assert summary["label_use_random"]["mean"] == pytest.approx(20.0)
    table = markdown_table(summary)
    assert (
        "**LAD student − self-distillation (the baseline as teacher): +2.00 mIoU (± 1.00 std, SE 0.58"
        in table
    )
    assert "Teacher with random codes − without its label channel: +20.00 mIoU" in table


def test_stage_time_comes_from_the_stage_log(tmp_path: Path) -> None:
    """A reused stage reports the time its training took, not the time of the run that reused it."""
    records = [{"type": "train", "iter": 10, "s_per_iter": 0.5}, {"type": "val", "iter": 10, "mIoU": 1.0},
               {"type": "train", "iter": 25, "s_per_iter": 2.0}]  # fmt: skip
    (tmp_path / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    assert training_seconds(tmp_path) == pytest.approx(10 * 0.5 + 15 * 2.0)
    assert training_seconds(tmp_path / "missing") == 0.0

"""The distillation benchmark (``ladseg kd-bench``) on a handful of real CamVid images.

Checks the protocol wiring, not which method wins: the teacher is trained once and shared by every
seed, the fine-tuned students start from their seed's baseline, each row's difference to its control
is the paired difference of the scores, and a rerun trains nothing. Skipped where CamVid is absent.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch

from ladseg.cli import main
from ladseg.demo import kd_benchmark
from ladseg.demo.kd_benchmark import Bench, load_bench_recipe
from ladseg.demo.report import paired_gap, verdict_word
from ladseg.errors import ConfigError

CAMVID = Path(__file__).resolve().parents[3] / "shared" / "data" / "camvid"
RECIPE = Path(__file__).resolve().parents[2] / "configs" / "_recipes_" / "camvid_kd.yaml"


def test_recipe_names_every_method_config_and_protocol() -> None:
    recipe = load_bench_recipe(RECIPE)
    assert set(recipe.protocols["finetune"]) == set(recipe.methods)  # protocol (a) runs every method
    for path in recipe.methods.values():
        assert path.is_file(), path
    bench = Bench(recipe, Path("/nonexistent"))
    stages = bench.stages(["finetune"], ["cwd"])
    assert stages == ["baseline", "finetune/control", "finetune/self_distill", "finetune/cwd"]
    cfg = bench.stage_config(1, "finetune/cwd")
    assert cfg.train.init_checkpoint == "/nonexistent/seed1/baseline/last.pth"
    assert cfg.teacher.checkpoint == "/nonexistent/teacher/last.pth" and cfg.run.seed == 1
    control = bench.stage_config(1, "finetune/control")
    assert (control.train.iters, control.optim.lr) == (cfg.train.iters, cfg.optim.lr)
    assert control.method.aux_weight == cfg.method.aux_weight == 0.4  # one control for every row
    scratch = bench.stage_config(0, "scratch/kd")
    assert scratch.train.init_checkpoint is None
    assert scratch.train.iters == bench.stage_config(0, "baseline").train.iters
    assert bench.stage_config(0, "finetune/lad").teacher.checkpoint == "/nonexistent/lad_teacher/last.pth"
    variant = bench.stage_config(0, "finetune/lad_dist")  # a lad_<x> row distils the LAD teacher too
    assert variant.teacher.checkpoint == "/nonexistent/lad_teacher/last.pth"
    assert [loss.name for loss in variant.method.kd_losses] == ["dist"]
    assert variant.method.teacher_label == bench.stage_config(0, "finetune/lad").method.teacher_label


def test_a_row_can_name_its_own_lad_teacher(tmp_path: Path) -> None:
    """``lad_teachers`` adds teachers by name; a row's ``lad_teacher`` picks one, trained in its own folder."""
    recipe = load_bench_recipe(RECIPE)
    bench = Bench(recipe, Path("/nonexistent"))
    onehot = bench.stage_config(0, "finetune/lad_onehot")
    assert onehot.teacher.checkpoint == "/nonexistent/lad_teacher_onehot/last.pth"
    assert onehot.method.teacher_label.kind == "onehot"
    teacher = bench.teacher_config("lad_teacher_onehot_corrupt")
    assert teacher.run.work_dir == "/nonexistent/lad_teacher_onehot_corrupt" and teacher.run.seed == 0
    assert teacher.method.encoder.kind == "onehot" and teacher.method.encoder.corruption.flip_prob > 0
    assert teacher.train.iters == bench.teacher_config("lad_teacher").train.iters  # the lad_teacher profile
    assert recipe.teacher_folder("lad") == "lad_teacher" and recipe.teacher_folder("kd") == "teacher"
    bad = tmp_path / "r.yaml"
    body = "student: a.yaml\nteacher: b.yaml\nprotocols: {finetune: [lad_x]}\n"
    bad.write_text(
        body + "lad_teachers: {oh: t.yaml}\nmethods: {lad_x: {config: c.yaml, lad_teacher: other}}\n"
    )
    with pytest.raises(
        ConfigError, match=r"methods.lad_x.lad_teacher: 'other' is not in lad_teachers \['oh'\]"
    ):
        load_bench_recipe(bad)
    bad.write_text(body + "lad_teachers: {oh: t.yaml}\nmethods: {lad_x: {config: c.yaml, teacher: oh}}\n")
    with pytest.raises(ConfigError, match="methods.lad_x: expected a config path"):
        load_bench_recipe(bad)
    bad.write_text(body + "lad_teachers: {oh: t.yaml}\nmethods: {lad_x: {config: c.yaml, lad_teacher: oh}}\n")
    assert load_bench_recipe(bad).teacher_folder("lad_x") == "lad_teacher_oh"  # no default lad_teacher needed


def test_the_time_matched_control_exists_in_each_protocol(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """In scratch the plain stage is the baseline: a method stepping 2.5x slower gets 2.5x its iterations.
    The step costs are measured once (here faked), kept, and reused by every seed."""
    bench = Bench(load_bench_recipe(RECIPE), tmp_path)
    assert bench.stages(["scratch"], ["cwd"], ["cwd"]) == [
        "baseline",
        "scratch/cwd",
        "scratch/control_time_cwd",
    ]
    timed: list[list[str]] = []

    def fake_seconds(cfgs: list, rounds: int, warmup: int) -> list[float]:
        timed.append([c.method.name for c in cfgs])
        return [2.0, 0.8]

    monkeypatch.setattr(kd_benchmark, "training_step_seconds", fake_seconds)
    with pytest.raises(ConfigError, match="needs .*teacher.last.pth trained first"):
        bench.time_matched_iters(0, "scratch", "cwd", 1000)
    (tmp_path / "teacher").mkdir()
    (tmp_path / "teacher" / "last.pth").write_bytes(b"")  # only its existence is checked before timing
    assert bench.time_matched_iters(0, "scratch", "cwd", 1000) == 2500
    assert timed == [["distill", "supervised"]]  # the method's step against the baseline's
    assert bench.time_matched_iters(1, "scratch", "cwd", 1000) == 2500 and len(timed) == 1  # kept
    assert json.loads((tmp_path / "step_cost" / "scratch_cwd.json").read_text())["ratio"] == 2.5
    cfg = bench.stage_config(0, "scratch/control_time_cwd")
    assert (cfg.train.iters, cfg.train.init_checkpoint, cfg.teacher.checkpoint) == (2500, None, None)
    assert cfg.method.name == bench.stage_config(0, "baseline").method.name


def test_recipe_errors_name_the_key(tmp_path: Path) -> None:
    bad = tmp_path / "r.yaml"
    bad.write_text("student: a.yaml\nteacher: b.yaml\nmethods: {kd: c.yaml}\nprotocols: {finetune: [cwd]}\n")
    with pytest.raises(ConfigError, match=r"protocols.finetune lists \['cwd'\]"):
        load_bench_recipe(bad)
    bad.write_text("student: a.yaml\nteacher: b.yaml\nmethods: {kd: c.yaml}\nprotocols: {later: [kd]}\n")
    with pytest.raises(ConfigError, match="unknown protocol 'later'"):
        load_bench_recipe(bad)
    bad.write_text(
        "student: a.yaml\nteacher: b.yaml\nmethods: {lad_x: c.yaml}\nprotocols: {finetune: [lad_x]}\n"
    )
    with pytest.raises(ConfigError, match=r"\['lad_x'\] need lad_teacher"):
        load_bench_recipe(bad)


def test_verdict_needs_two_standard_errors() -> None:
    assert verdict_word(paired_gap([1.0])) == "1 seed"
    assert verdict_word(paired_gap([1.0, 1.2, 0.9])) == "gain"
    assert verdict_word(paired_gap([-1.0, -1.2, -0.9])) == "loss"
    assert verdict_word(paired_gap([1.0, -0.8, 0.5])) == "noise"


@pytest.mark.skipif(
    not (CAMVID / "train").is_dir(), reason=f"CamVid not found at {CAMVID} (../shared/data/camvid)"
)
def test_quick_benchmark_shares_the_teacher_and_pairs_by_seed(tmp_path: Path) -> None:
    out = tmp_path / "kd"
    argv = ["kd-bench", str(RECIPE), "--quick", "--out", str(out), "--seeds", "2", "--methods", "kd,cwd",
            f"data.root={CAMVID}"]  # fmt: skip
    assert main(argv) == 0
    assert (out / "teacher" / "last.pth").is_file()
    assert not list(out.glob("seed*/teacher")) and not (out / "lad_teacher").exists()  # no LAD row asked
    summary = json.loads((out / "report" / "report.json").read_text())
    rows = summary["protocols"]["finetune"]["rows"]
    assert list(rows) == ["control", "self_distill", "kd", "cwd"]
    per_seed = [
        a - b for a, b in zip(rows["cwd"]["mIoU_per_seed"], rows["control"]["mIoU_per_seed"], strict=True)
    ]
    assert rows["cwd"]["vs_control"]["per_seed"] == pytest.approx(per_seed)
    assert list(summary["protocols"]["scratch"]["rows"]) == ["baseline", "kd", "cwd"]
    assert 0.0 < summary["teachers"]["teacher"]["mIoU"] <= 100.0
    # the fine-tuned students start from their own seed's baseline
    meta = torch.load(out / "seed1" / "finetune" / "cwd" / "last.pth", map_location="cpu", weights_only=True)
    assert str(out / "seed1" / "baseline" / "last.pth") in json.dumps(meta["meta"]["config"])
    assert math.isfinite(rows["kd"]["mIoU"])
    before = {p: p.stat().st_mtime_ns for p in out.rglob("last.pth")}
    assert main([*argv, "--report-only"]) == 0
    assert main(argv) == 0  # a rerun trains nothing
    assert {p: p.stat().st_mtime_ns for p in out.rglob("last.pth")} == before
    # the wall-clock-matched control: plain steps for as long as the cwd student's stage took
    assert main([*argv, "--seed", "0", "--time-matched", "cwd"]) == 0
    summary = json.loads((out / "report" / "report.json").read_text())
    matched = summary["protocols"]["finetune"]["rows"]["control_time_cwd"]
    log = [json.loads(line) for line in (out / "seed0/finetune/control_time_cwd/metrics.jsonl").open()]
    iters = max(r["iter"] for r in log if r["type"] == "train")
    assert iters >= 2 and matched["seeds"] == [0] and "vs_control" in matched
    cwd = summary["protocols"]["finetune"]["rows"]["cwd"]  # and the method against it, paired by seed
    assert cwd["vs_time_matched"]["per_seed"] == pytest.approx([cwd["mIoU_per_seed"][0] - matched["mIoU"]])
    assert "cwd against the control given its wall-clock" in (out / "report" / "report.md").read_text()


@pytest.mark.skipif(
    not (CAMVID / "train").is_dir(), reason=f"CamVid not found at {CAMVID} (../shared/data/camvid)"
)
def test_a_methods_own_stage_runs_once_on_the_teacher_and_feeds_its_losses(tmp_path: Path) -> None:
    """MasKD's receptive tokens: trained once on the shared teacher, read by every seed's student."""
    out = tmp_path / "kd"
    argv = ["kd-bench", str(RECIPE), "--quick", "--out", str(out), "--seeds", "2", "--methods", "maskd",
            "--protocols", "finetune", f"data.root={CAMVID}"]  # fmt: skip
    assert main(argv) == 0
    tokens = out / "maskd_stage" / "last.pth"
    stage = torch.load(tokens, map_location="cpu", weights_only=True)
    assert str(out / "teacher" / "last.pth") in json.dumps(
        stage["meta"]["config"]
    )  # started from the teacher
    assert not list(out.glob("seed*/maskd_stage"))
    for seed in (0, 1):
        meta = torch.load(out / f"seed{seed}/finetune/maskd/last.pth", map_location="cpu", weights_only=True)
        (loss,) = meta["meta"]["config"]["method"]["kd_losses"]
        assert (loss["name"], loss["tokens"]) == ("maskd", str(tokens))
    summary = json.loads((out / "report" / "report.json").read_text())
    assert math.isfinite(summary["protocols"]["finetune"]["rows"]["maskd"]["mIoU"])


def test_method_stages_must_name_a_method_and_its_option(tmp_path: Path) -> None:
    bad = tmp_path / "r.yaml"
    base = "student: a.yaml\nteacher: b.yaml\nmethods: {kd: c.yaml}\nprotocols: {finetune: [kd]}\n"
    bad.write_text(base + "method_stages: {nope: {config: t.yaml, fills: tokens}}\n")
    with pytest.raises(ConfigError, match="method_stages.nope: no such method"):
        load_bench_recipe(bad)
    bad.write_text(base + "method_stages: {kd: {config: t.yaml}}\n")
    with pytest.raises(ConfigError, match=r"method_stages.kd: expected \{config"):
        load_bench_recipe(bad)


def test_unknown_methods_and_seed_counts_are_refused_before_training(tmp_path: Path, capsys) -> None:
    argv = ["kd-bench", str(RECIPE), "--out", str(tmp_path / "kd")]
    assert main([*argv, "--methods", "kd,nope"]) == 2
    assert "unknown method(s) ['nope']" in capsys.readouterr().err
    assert main([*argv, "--time-matched", "later"]) == 2
    assert "unknown method(s) ['later']" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main([*argv, "--seeds", "0"])
    assert "number of seeds >= 1" in capsys.readouterr().err
    assert not (tmp_path / "kd").exists()  # nothing was trained or written

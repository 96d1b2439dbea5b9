"""CI smoke test of the CamVid recipe on a handful of real images (skipped where CamVid is absent).

The quick profile trains each of the five stages for a few iterations on 6 training and 3 validation
images: it checks that the pipeline runs end to end on the real layout and that the report's numbers
are well-formed and agree with each other, not that LAD wins.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from ladseg.cli import main
from ladseg.engine.logging import read_metrics

CAMVID = Path(__file__).resolve().parents[3] / "shared" / "data" / "camvid"
RECIPE = Path(__file__).resolve().parents[2] / "configs" / "_recipes_" / "camvid.yaml"


@pytest.mark.skipif(
    not (CAMVID / "train").is_dir(), reason=f"CamVid not found at {CAMVID} (../shared/data/camvid)"
)
def test_quick_camvid_recipe_runs_all_five_stages(tmp_path: Path, capsys) -> None:
    out = tmp_path / "camvid"
    assert main(["demo", "--quick", "--recipe", str(RECIPE), "--out", str(out), f"data.root={CAMVID}"]) == 0
    printed = capsys.readouterr().out
    summary = json.loads((out / "report" / "report.json").read_text())
    assert set(summary["rows"]) == {
        "baseline", "control", "teacher (with labels)", "teacher (no labels)", "teacher (random codes)",
        "LAD student", "self-distillation",
    }  # fmt: skip
    assert summary["class_names"][:2] == ["sky", "building"] and len(summary["class_names"]) == 11
    for row in summary["rows"].values():
        assert 0.0 <= row["mIoU"] <= 100.0
    rows = summary["rows"]
    assert math.isclose(
        summary["gain_vs_self_distill"]["mean"],
        rows["LAD student"]["mIoU"] - rows["self-distillation"]["mIoU"],
        abs_tol=1e-6,
    )
    assert math.isclose(
        summary["label_use"]["mean"],
        rows["teacher (with labels)"]["mIoU"] - rows["teacher (no labels)"]["mIoU"],
        abs_tol=1e-6,
    )
    assert "LAD student − self-distillation" in printed
    for name in ("report.md", "curves.png", "label_gap.png", "predictions.png"):
        assert (out / "report" / name).stat().st_size > 0, name
    teacher_vals = [r for r in read_metrics(out / "seed0" / "teacher") if r["type"] == "val"]
    assert teacher_vals and all("label_gap" in r for r in teacher_vals)
    # a second run reuses every finished stage: nothing is trained again
    before = {p: p.stat().st_mtime_ns for p in out.glob("seed0/*/last.pth")}
    assert main(["demo", "--quick", "--recipe", str(RECIPE), "--out", str(out), f"data.root={CAMVID}"]) == 0
    assert {p: p.stat().st_mtime_ns for p in out.glob("seed0/*/last.pth")} == before


@pytest.mark.skipif(
    not (CAMVID / "train").is_dir(), reason=f"CamVid not found at {CAMVID} (../shared/data/camvid)"
)
def test_quick_camvid_recipe_on_the_imagenet_lite0(tmp_path: Path) -> None:
    import torch

    out = tmp_path / "camvid_effl0"
    recipe = RECIPE.with_name("camvid_effl0.yaml")
    assert main(["demo", "--quick", "--recipe", str(recipe), "--out", str(out), f"data.root={CAMVID}"]) == 0
    rows = json.loads((out / "report" / "report.json").read_text())["rows"]
    assert {"baseline", "LAD student", "control", "self-distillation", "teacher (with labels)"} <= set(rows)
    for stage, channels in (("baseline", 3), ("teacher", 4), ("student", 3)):
        spec = torch.load(out / "seed0" / stage / "last.pth", weights_only=True)["meta"]["spec"]
        assert (spec["name"], spec["backbone"], spec["in_channels"]) == (
            "deeplabv3",
            "efficientnet_lite0",
            channels,
        )

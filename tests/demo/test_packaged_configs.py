"""The configs and demo recipes ship inside the package: a wheel holds them, and the demo's recipe
lookup and config loading (``_base_`` chains included) work from a folder outside the checkout."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
import yaml

from ladseg.config_lookup import CONFIG_DIR, DEFAULT_RECIPE, find_config, packaged_configs
from ladseg.demo.kd_benchmark import load_bench_recipe
from ladseg.demo.recipe import load_recipe
from ladseg.engine.config import load_config
from ladseg.errors import ConfigError

REPO = Path(__file__).resolve().parents[2]
VOC = "voc/deeplabv3_r18_supervised_40k_voc_512.yaml"


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The wheel built offline from a copy of the project (the checkout itself is left untouched)."""
    src = tmp_path_factory.mktemp("project")
    shutil.copy(REPO / "pyproject.toml", src)
    shutil.copy(REPO / "README.md", src)
    shutil.copytree(
        REPO / "src" / "ladseg", src / "src" / "ladseg", ignore=shutil.ignore_patterns("__pycache__")
    )
    dist = tmp_path_factory.mktemp("dist")
    cmd = [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--no-index",
           "-q", "-w", str(dist), str(src)]  # fmt: skip
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    (found,) = dist.glob("ladseg-*.whl")
    return found


def test_the_wheel_holds_every_config_and_recipe(wheel: Path) -> None:
    names = set(zipfile.ZipFile(wheel).namelist())
    shipped = {f"ladseg/configs/{p.as_posix()}" for p in packaged_configs()}
    assert "ladseg/configs/_recipes_/demo.yaml" in shipped and len(shipped) > 80
    assert shipped <= names, sorted(shipped - names)[:5]
    # the recipes' configs and their _base_ parts are among them
    for recipe in packaged_configs("_recipes_/*.yaml"):
        if "methods" in yaml.safe_load((CONFIG_DIR / recipe).read_text()):  # a kd-bench recipe
            b = load_bench_recipe(CONFIG_DIR / recipe)
            paths = [
                b.student,
                b.teacher,
                *b.methods.values(),
                *(p for p in (b.lad_teacher, b.self_distill) if p),
            ]
        else:
            r = load_recipe(CONFIG_DIR / recipe)
            paths = [r.baseline, r.teacher, r.student]
            paths += [p for v in r.variants.values() for p in (v.teacher, v.student)]
        for path in paths:
            assert f"ladseg/configs/{path.resolve().relative_to(CONFIG_DIR).as_posix()}" in names


def test_the_unpacked_wheel_finds_recipes_and_configs_from_any_folder(wheel: Path, tmp_path: Path) -> None:
    """Run from an empty folder with only the wheel's files importable: the packaged recipe, its
    stages' configs and a config named by its path inside the package all load."""
    site = tmp_path / "site"
    zipfile.ZipFile(wheel).extractall(site)
    work = tmp_path / "elsewhere"
    work.mkdir()
    script = f"""
import json, ladseg
from ladseg.demo.recipe import load_recipe, stage_config
from ladseg.engine.config import load_config
recipe = load_recipe()
stages = {{s: stage_config(recipe, s, __import__("pathlib").Path("runs"), 0, "quick", []) for s in recipe.stages}}
camvid = load_recipe("_recipes_/camvid.yaml")
voc = load_config("{VOC}")
same = load_config("configs/{VOC}")
print(json.dumps({{"package": ladseg.__file__, "stages": sorted(stages),
    "student_method": stages["student"].method_name, "baseline_crop": stages["baseline"].data.crop_size,
    "camvid_dataset": load_config(camvid.baseline).data.dataset, "voc_iters": voc.train.iters,
    "voc_dataset": voc.data.dataset, "voc_backbone": voc.model.backbone, "same": voc == same}}))
"""
    env = dict(os.environ, OMP_NUM_THREADS="1")
    # -I: neither PYTHONPATH nor the current folder; the unpacked wheel goes first on the path
    cmd = [sys.executable, "-I", "-c", f"import sys; sys.path.insert(0, {str(site)!r}); exec({script!r})"]
    done = subprocess.run(cmd, cwd=work, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    got = json.loads(done.stdout.strip().splitlines()[-1])
    assert Path(got["package"]).is_relative_to(site)  # the wheel's copy, not the checkout
    assert got["stages"] == sorted(load_recipe().stages)
    assert got["student_method"] == "distill" and got["baseline_crop"] == [64, 64]  # the quick profile
    assert got["camvid_dataset"] == "camvid"
    # _base_ inheritance: dataset, model and schedule parts merged under the VOC config
    assert (got["voc_dataset"], got["voc_backbone"], got["voc_iters"]) == ("voc", "resnet18", 40000)
    assert got["same"]


def test_lookup_prefers_the_users_file_then_the_packaged_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    assert find_config(VOC) == CONFIG_DIR / VOC
    assert find_config(f"configs/{VOC}") == CONFIG_DIR / VOC
    assert find_config("_recipes_/demo.yaml") == DEFAULT_RECIPE
    mine = tmp_path / VOC
    mine.parent.mkdir()
    mine.write_text(f"_base_: {CONFIG_DIR / VOC}\ntrain: {{iters: 7}}\n")
    assert find_config(VOC) == Path(VOC)  # an existing file of the user's wins
    assert load_config(VOC).train.iters == 7 and load_config(VOC).data.dataset == "voc"
    with pytest.raises(ConfigError, match="config file not found: nope.yaml nor among the packaged"):
        find_config("nope.yaml")
    with pytest.raises(ConfigError, match="demo recipe nope.yaml not found"):
        load_recipe("nope.yaml")

import re
from pathlib import Path

import pytest
import yaml

from ladseg.engine.config import Config, config_from_dict, load_config, save_config
from ladseg.errors import ConfigError

CONFIGS = Path(__file__).resolve().parents[2] / "configs"


def write(path: Path, data: dict) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(data))
    return path


def test_inheritance_deep_merges_and_child_wins(tmp_path: Path) -> None:
    write(tmp_path / "base" / "b.yaml", {"model": {"name": "pspnet", "aux": False}, "optim": {"lr": 0.02}})
    cfg_path = write(tmp_path / "child.yaml", {"_base_": "base/b.yaml", "model": {"backbone": "resnet50"}})
    cfg = load_config(cfg_path)
    assert (cfg.model.name, cfg.model.backbone, cfg.model.aux) == ("pspnet", "resnet50", False)
    assert cfg.optim.lr == 0.02
    assert cfg.run.work_dir == str(Path("work_dirs") / "child")


def test_overrides_parse_yaml_scalars(tmp_path: Path) -> None:
    cfg_path = write(tmp_path / "c.yaml", {"train": {"iters": 10}})
    cfg = load_config(
        cfg_path,
        [
            "train.iters=100",
            "data.crop_size=[64,48]",
            "teacher.checkpoint=t.pth",
            "method.name=lad_teacher",
            "method.tau=2",
            "optim.lr=1",
            "optim.weight_decay=5e-4",  # YAML 1.1 reads this (no dot) as a string
        ],
    )
    assert cfg.train.iters == 100
    assert cfg.data.crop_size == [64, 48]
    assert cfg.teacher.checkpoint == "t.pth"
    assert cfg.method_name == "lad_teacher" and cfg.method.tau == 2.0 and isinstance(cfg.method.tau, float)
    assert isinstance(cfg.optim.lr, float) and cfg.optim.lr == 1.0
    assert cfg.optim.weight_decay == 5e-4


def test_unknown_key_names_dotted_path() -> None:
    with pytest.raises(ConfigError, match=r"train\.itres"):
        config_from_dict({"train": {"itres": 5}})
    with pytest.raises(ConfigError, match=r"teacher\.model\.nmae"):
        config_from_dict({"teacher": {"model": {"nmae": "x"}}})


def test_wrong_type_names_key_and_expected_type() -> None:
    with pytest.raises(ConfigError, match=r"'train\.iters'.*int"):
        config_from_dict({"train": {"iters": "many"}})
    with pytest.raises(ConfigError, match=r"data\.crop_size\[1\]"):
        config_from_dict({"data": {"crop_size": [64, "x"]}})
    with pytest.raises(ConfigError, match=r"train\.amp"):
        config_from_dict({"train": {"amp": "fp8"}})
    with pytest.raises(ConfigError, match=r"model\.aux"):
        config_from_dict({"model": {"aux": 1}})
    with pytest.raises(ConfigError, match=r"'optim\.lr'.*float"):
        config_from_dict({"optim": {"lr": "fast"}})


def test_teacher_config_is_inlined(tmp_path: Path) -> None:
    write(tmp_path / "teacher.yaml", {"model": {"name": "pspnet", "backbone": "resnet101", "in_channels": 4}})
    cfg = load_config(
        write(tmp_path / "s.yaml", {"teacher": {"config": "teacher.yaml", "checkpoint": "t.pth"}})
    )
    assert cfg.teacher.model is not None
    assert (cfg.teacher.model.backbone, cfg.teacher.model.in_channels) == ("resnet101", 4)


def test_a_base_configs_teacher_is_found_beside_the_base(tmp_path: Path) -> None:
    """A sweep config in another folder inherits a method config whose teacher.config is relative."""
    write(tmp_path / "zoo" / "teacher.yaml", {"model": {"name": "pspnet", "backbone": "resnet101"}})
    write(tmp_path / "zoo" / "kd.yaml", {"teacher": {"config": "teacher.yaml", "checkpoint": "t.pth"}})
    variant = write(tmp_path / "sweep" / "kd_w0.3.yaml", {"_base_": "../zoo/kd.yaml"})
    assert load_config(variant).teacher.model.backbone == "resnet101"


def test_saved_config_round_trips(tmp_path: Path) -> None:
    cfg = load_config(write(tmp_path / "a.yaml", {"train": {"iters": 7}, "method": {"aux_weight": 0.2}}))
    save_config(cfg, tmp_path / "config.yaml")
    again = load_config(tmp_path / "config.yaml")
    assert again.to_dict() == cfg.to_dict()


@pytest.mark.parametrize(
    "path",
    sorted(p for p in CONFIGS.rglob("*.yaml") if not any(part.startswith("_") for part in p.parts)),
    ids=str,
)
def test_shipped_configs_load(path: Path) -> None:
    cfg = load_config(path)
    assert isinstance(cfg, Config) and cfg.train.iters > 0


@pytest.mark.parametrize(
    ("method", "expected"),
    [
        ({"name": "lad_teacher", "consistency_weight": "five"},
         "config key 'method.consistency_weight': expected float, got 'five' (str)"),
        ({"name": "lad_teacher", "encoder": {"noise": "x"}}, "config key 'method.encoder.noise': expected float"),
        ({"name": "lad_teacher", "encoder": {"kind": "gray"}}, "config key 'method.encoder.kind': unknown label"),
        ({"name": "distill", "kd_losses": [{"name": "kd", "weight": "heavy"}]},
         "config key 'method.kd_losses[0].weight': expected float"),
        ({"name": "distill", "kd_losses": [{"name": "at", "p": "two"}]}, "config key 'method.kd_losses[0].p'"),
        ({"name": "distill", "kd_losses": [{"name": "cwd", "temp": 2}]}, "unknown config key method.kd_losses[0].temp"),
        ({"name": "distill", "teacher_label": {"scale": [1]}}, "config key 'method.teacher_label.scale'"),
        ({"name": "lad_teacher", "eval_label": "always"}, "config key 'method.eval_label'"),
    ],
)  # fmt: skip
def test_method_section_is_typed_when_the_config_is_read(method: dict, expected: str) -> None:
    with pytest.raises(ConfigError) as err:
        config_from_dict({"method": method})
    assert str(err.value).startswith(expected) and "\n" not in str(err.value)


def test_method_section_is_typed_by_its_name() -> None:
    cfg = config_from_dict({"method": {"name": "distill", "kd_losses": [{"name": "cwd_feature", "tau": 2}]}})
    (spec,) = cfg.method.kd_losses
    assert (spec.name, spec.tau, spec.weight, spec.normalize_by) == ("cwd_feature", 2.0, None, "student")
    assert cfg.method.teacher_label.noise == 0.02 and cfg.method.teacher_label.scale == "auto"
    assert config_from_dict({}).method_name == "supervised"
    saved = cfg.to_dict()["method"]  # the resolved section, defaults filled, reads back the same
    assert config_from_dict({"method": saved}).method == cfg.method


def test_dry_run_prints_the_resolved_config(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    import yaml

    from ladseg.cli import main

    write(tmp_path / "c.yaml", {"method": {"name": "lad_teacher", "encoder": {"noise": 0}}})
    assert (
        main(
            [
                "train",
                str(tmp_path / "c.yaml"),
                "train.iters=7",
                f"run.work_dir={tmp_path / 'run'}",
                "--dry-run",
            ]
        )
        == 0
    )
    printed = yaml.safe_load(capsys.readouterr().out)
    assert printed["train"]["iters"] == 7 and printed["method"]["encoder"]["noise"] == 0.0
    assert printed["method"]["consistency_weight"] == 5.0  # defaults are resolved
    assert not (tmp_path / "run").exists()
    # overrides may also follow the option, and all of them apply in order
    args = [str(tmp_path / "c.yaml"), "train.iters=8", "--dry-run", "train.iters=9", "optim.lr=0.5"]
    assert main(["train", *args]) == 0
    printed = yaml.safe_load(capsys.readouterr().out)
    assert printed["train"]["iters"] == 9 and printed["optim"]["lr"] == 0.5
    with pytest.raises(SystemExit):  # an unknown option is still argparse's error, not an override
        main(["train", str(tmp_path / "c.yaml"), "--dry-run", "--bogus"])
    assert "unrecognized arguments: --bogus" in capsys.readouterr().err


# One bad value per section (and per kind of check): the config load that --dry-run runs refuses
# each with its dotted key, before any data, model or checkpoint is read.
BAD_VALUES = [
    ("run.device=tpu", "run.device"),
    ("model.name=nope", "model.name"),
    ("model.backbone=nope", "model.backbone"),
    ("model.output_stride=7", "model.output_stride"),
    ("model.in_channels=0", "model.in_channels"),
    ("data.dataset=nope", "data.dataset"),
    ("data.normalize=nope", "data.normalize"),
    ("data.kwargs={bogus: 1}", "data.kwargs.bogus"),
    ("data.pad=foo", "data.pad"),
    ("data.batch_size=0", "data.batch_size"),
    ("optim.name=lion", "optim.name"),
    ("optim.lr=0", "optim.lr"),
    ("train.iters=0", "train.iters"),
    ("train.amp=fp8", "train.amp"),
    ("train.channels_last=maybe", "train.channels_last"),
    ("eval.mode=foo", "eval.mode"),
    ("eval.average=median", "eval.average"),
    ("method.aux_weight=-1", "method.aux_weight"),
    ("method.kd_losses=[{name: kd, tau: 0}]", "method.kd_losses[0]"),
    ("method.kd_losses=[{name: cwd_feature, normalize_by: x}]", "method.kd_losses[0]"),
    ("method.kd_losses=[{name: cirkd, pixel_memory_size: 0}]", "method.kd_losses[0]"),
    ("method.kd_losses=[{name: nope}]", "method.kd_losses[0].name"),
    ("method.teacher_label.kind=nope", "method.teacher_label.kind"),
    ("teacher.in_channels=0", "teacher.in_channels"),
]


@pytest.mark.parametrize(("override", "key"), BAD_VALUES, ids=[o for o, _ in BAD_VALUES])
def test_every_section_refuses_a_bad_value_at_load(override: str, key: str) -> None:
    with pytest.raises(ConfigError, match=re.escape(key)):
        load_config(CONFIGS / "camvid" / "kd_cwd_effl2_stdc1_camvid_half.yaml", [override])


def test_the_optimiser_names_the_config_accepts_are_the_ones_the_engine_builds() -> None:
    from ladseg.engine.builders import OPTIMIZERS
    from ladseg.engine.config import OPTIMIZER_NAMES

    assert sorted(OPTIMIZERS) == sorted(OPTIMIZER_NAMES)

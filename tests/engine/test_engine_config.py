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
            "method.tau=2",
            "optim.lr=1",
            "optim.weight_decay=5e-4",  # YAML 1.1 reads this (no dot) as a string
        ],
    )
    assert cfg.train.iters == 100
    assert cfg.data.crop_size == [64, 48]
    assert cfg.teacher.checkpoint == "t.pth"
    assert cfg.method == {"name": "supervised", "tau": 2}
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

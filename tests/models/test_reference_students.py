"""Reference students (4-channel first conv, 4th channel all zero) load for predict and eval (issue 14, bug 2).

The reference code saves every network with a 4-channel first conv; a student's 4th channel only
ever saw zeros, so import drops it (exactly) and the student is the image-only network it is.
A real LAD teacher (trained 4th channel) under an image-only config is a one-line error.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from ref_checkpoints import REF_DIR, parse_key_file, random_state_dict
from tiny_data import make_folder_dataset, tiny_config

from ladseg.cli import main as cli_main
from ladseg.engine.checkpoint import build_model_from_checkpoint, load_weights_into
from ladseg.engine.config import save_config
from ladseg.errors import CheckpointError
from ladseg.models import build_model
from ladseg.models.convert import convert_reference_checkpoint, rename_reference_key

KEYS = REF_DIR / "psp_resnet18_voc21_lad.txt"
pytestmark = pytest.mark.skipif(not KEYS.is_file(), reason="reference key lists not available")


def _reference(num_classes: int = 21, dead: bool = True, seed: int = 0) -> dict[str, torch.Tensor]:
    sd = random_state_dict(parse_key_file(KEYS), seed=seed)
    if dead:
        sd["pretrained.conv1.weight"][:, 3] = 0.0
    for key in (
        "head.classifier.weight",
        "head.classifier.bias",
        "auxlayer.block.4.weight",
        "auxlayer.block.4.bias",
    ):
        sd[key] = sd[key][:num_classes].clone()
    return sd


def test_dead_channel_is_dropped_exactly() -> None:
    sd = _reference()
    student, meta = convert_reference_checkpoint(sd)
    assert (
        student.in_channels == 3 and meta["spec"]["in_channels"] == 3 and meta["dropped_input_channels"] == 1
    )
    # the 4-channel network as the reference ran it: the same outputs whatever its 4th channel reads
    four = build_model("pspnet", "resnet18", 21, in_channels=4)
    four.load_state_dict({rename_reference_key(k): v for k, v in sd.items()})
    x = torch.randn(1, 3, 33, 33) * 50
    with torch.no_grad():
        expected = four.eval()(torch.cat([x, torch.zeros(1, 1, 33, 33)], 1)).logits
        torch.testing.assert_close(student.eval()(x).logits, expected, atol=0, rtol=0)
    # a trained label channel (a teacher) is kept
    teacher, _ = convert_reference_checkpoint(_reference(dead=False))
    assert teacher.in_channels == 4


def test_converted_and_raw_students_fit_three_channel_models(tmp_path: Path) -> None:
    sd = _reference()
    torch.save(sd, tmp_path / "ref.pth")
    model = build_model("pspnet", "resnet18", 21)
    assert load_weights_into(model, tmp_path / "ref.pth")["normalize"] == "reference_bgr"
    # a ladseg checkpoint written before dead channels were dropped (4-channel spec) loads as 3 channels
    four = build_model("pspnet", "resnet18", 21, in_channels=4)
    four.load_state_dict({rename_reference_key(k): v for k, v in sd.items()})
    old = {
        "model": four.state_dict(),
        "meta": {"spec": four.spec, "normalize": "reference_bgr", "class_names": None},
    }
    torch.save(old, tmp_path / "old.pth")
    rebuilt, meta = build_model_from_checkpoint(tmp_path / "old.pth")
    assert rebuilt.in_channels == 3 and meta["spec"]["in_channels"] == 3
    load_weights_into(build_model("pspnet", "resnet18", 21), tmp_path / "old.pth")
    torch.testing.assert_close(
        rebuilt.state_dict()["backbone.conv1.weight"], sd["pretrained.conv1.weight"][:, :3]
    )


def test_predict_and_eval_accept_a_reference_student(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    root = make_folder_dataset(tmp_path / "data", n_train=1, n_val=1)
    torch.save(_reference(num_classes=3), tmp_path / "student.pth")
    torch.save(_reference(num_classes=3, dead=False), tmp_path / "teacher.pth")
    cfg = tiny_config(root, tmp_path / "run", model={"name": "pspnet", "backbone": "resnet18", "head": {}})
    save_config(cfg, tmp_path / "cfg.yaml")

    Image.fromarray(np.full((40, 40, 3), 120, np.uint8)).save(tmp_path / "img.png")
    out = tmp_path / "pred"
    assert cli_main(["predict", "--checkpoint", str(tmp_path / "student.pth"), "--input", str(tmp_path / "img.png"),
                     "--output", str(out), "--device", "cpu"]) == 0  # fmt: skip
    assert (out / "img.png").is_file()

    assert cli_main(["eval", str(tmp_path / "cfg.yaml"), "--checkpoint", str(tmp_path / "student.pth"),
                     "--device", "cpu"]) == 0  # fmt: skip
    assert "mIoU" in capsys.readouterr().out

    code = cli_main(
        ["eval", str(tmp_path / "cfg.yaml"), "--checkpoint", str(tmp_path / "teacher.pth"), "--device", "cpu"]
    )
    err = capsys.readouterr().err
    assert code == 2 and "reads 4 input channels" in err and "Traceback" not in err
    assert len(err.strip().splitlines()) == 1


def _live_student(num_classes: int = 21) -> dict[str, torch.Tensor]:
    """A reference student whose 4th-channel weights are not zero (weight decay shrinks them, never to 0):
    the reference's eval.py still runs it with a zero 4th channel."""
    sd = _reference(num_classes=num_classes, dead=False)
    sd["pretrained.conv1.weight"][:, 3] *= 1e-3
    return sd


def test_image_only_import_gives_the_logits_of_the_zero_channel_run() -> None:
    sd = _live_student()
    four = build_model("pspnet", "resnet18", 21, in_channels=4)
    four.load_state_dict({rename_reference_key(k): v for k, v in sd.items()})
    kept, _ = convert_reference_checkpoint(sd)
    assert kept.in_channels == 4  # without the option a live channel is kept (it may be a teacher's label)
    student, meta = convert_reference_checkpoint(sd, image_only=True)
    assert (
        student.in_channels == 3 and meta["spec"]["in_channels"] == 3 and meta["dropped_input_channels"] == 1
    )
    x = torch.randn(2, 3, 37, 41, dtype=torch.float64) * 50
    with torch.no_grad():
        expected = (
            four.double().eval()(torch.cat([x, torch.zeros(2, 1, 37, 41, dtype=torch.float64)], 1)).logits
        )
        got = student.double().eval()(x).logits
    assert expected.std() > 0.1  # a non-trivial comparison
    assert (got - expected).abs().max().item() <= 1e-12


def test_refusals_name_the_image_only_import_and_it_works(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    root = make_folder_dataset(tmp_path / "data", n_train=1, n_val=1)
    torch.save(_live_student(num_classes=3), tmp_path / "ref.pth")
    cfg = tiny_config(root, tmp_path / "run", model={"name": "pspnet", "backbone": "resnet18", "head": {}})
    save_config(cfg, tmp_path / "cfg.yaml")
    Image.fromarray(np.full((40, 40, 3), 120, np.uint8)).save(tmp_path / "img.png")
    four, three = tmp_path / "four.pth", tmp_path / "three.pth"
    assert cli_main(["convert", str(tmp_path / "ref.pth"), str(four)]) == 0
    capsys.readouterr()

    def refusal(argv: list[str]) -> str:
        assert cli_main(argv) == 2
        err = capsys.readouterr().err
        assert "Traceback" not in err and len(err.strip().splitlines()) == 1, err
        return err

    for ckpt in (tmp_path / "ref.pth", four):  # the reference file itself, and its 4-channel conversion
        err = refusal(["predict", "--checkpoint", str(ckpt), "--input", str(tmp_path / "img.png"),
                       "--output", str(tmp_path / "p"), "--device", "cpu"])  # fmt: skip
        assert f"ladseg convert --image-only {ckpt}" in err
        err = refusal(["eval", str(tmp_path / "cfg.yaml"), "--checkpoint", str(ckpt), "--device", "cpu"])
        assert "reads 4 input channels" in err and f"ladseg convert --image-only {ckpt}" in err
    model = build_model("pspnet", "resnet18", 3)
    with pytest.raises(CheckpointError, match="in_channels: checkpoint 4 vs model 3.*convert --image-only"):
        load_weights_into(model, four)

    assert cli_main(["convert", "--image-only", str(tmp_path / "ref.pth"), str(three)]) == 0
    assert "3 input channels (1 dropped)" in capsys.readouterr().out
    saved = torch.load(three, weights_only=True)
    assert saved["meta"]["spec"]["in_channels"] == 3 and saved["meta"]["dropped_input_channels"] == 1
    conv1 = _live_student(num_classes=3)["pretrained.conv1.weight"]
    assert torch.equal(saved["model"]["backbone.conv1.weight"], conv1[:, :3])
    again = tmp_path / "again.pth"  # the 4-channel conversion made image-only afterwards: the same weights
    assert cli_main(["convert", "--image-only", str(four), str(again)]) == 0
    redone = torch.load(again, weights_only=True)["model"]
    assert redone.keys() == saved["model"].keys()
    assert all(torch.equal(redone[k], saved["model"][k]) for k in redone)

    out = tmp_path / "pred"
    assert cli_main(["predict", "--checkpoint", str(three), "--input", str(tmp_path / "img.png"),
                     "--output", str(out), "--device", "cpu"]) == 0  # fmt: skip
    assert (out / "img.png").is_file()
    assert cli_main(["eval", str(tmp_path / "cfg.yaml"), "--checkpoint", str(three), "--device", "cpu"]) == 0
    assert "mIoU" in capsys.readouterr().out

"""``ladseg predict`` on real folders: shared stems, bad files, option ranges, the checkpoint's mode."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from reliability_helpers import cli_error, save_model_checkpoint, write_rotated_photo

import ladseg.engine.inference
from ladseg.cli import main
from ladseg.engine.checkpoint import load_checkpoint, save_checkpoint


def photo(path: Path, size: tuple[int, int] = (32, 32), seed: int = 0) -> Path:
    rng = np.random.default_rng(seed)
    Image.fromarray(rng.integers(0, 255, (*size, 3), dtype=np.uint8)).save(path)
    return path


def predict(ckpt: Path, inp: Path, out: Path, *extra: str) -> int:
    return main(["predict", "--checkpoint", str(ckpt), "--input", str(inp), "--output", str(out), *extra])


@pytest.fixture
def ckpt(tmp_path: Path) -> Path:
    return save_model_checkpoint(tmp_path / "model.pth")


def with_eval_settings(ckpt: Path, **sections: dict) -> Path:
    """The checkpoint as a training run saves it: its config holds the eval (and data) settings."""
    payload = load_checkpoint(ckpt)
    payload["meta"]["config"] = sections
    return save_checkpoint(ckpt.with_name("trained.pth"), payload)


def test_same_stem_with_two_extensions_writes_two_masks(ckpt: Path, tmp_path: Path, capsys) -> None:
    images = tmp_path / "in"
    images.mkdir()
    photo(images / "x.jpg", seed=1)
    photo(images / "x.png", seed=2)
    photo(images / "y.png", seed=3)
    assert predict(ckpt, images, tmp_path / "out") == 0
    assert "wrote 3 masks" in capsys.readouterr().out
    written = sorted(p.name for p in (tmp_path / "out").iterdir())
    assert written == [
        "x_jpg.png",
        "x_jpg_overlay.jpg",
        "x_png.png",
        "x_png_overlay.jpg",
        "y.png",
        "y_overlay.jpg",
    ]


def test_an_output_over_an_input_or_another_output_is_refused(ckpt: Path, tmp_path: Path, capsys) -> None:
    images = tmp_path / "in"
    images.mkdir()
    photo(images / "a.png")
    before = (images / "a.png").read_bytes()
    message = cli_error(["predict", "--checkpoint", str(ckpt), "--input", str(images), "--output", str(images)],
                        capsys)  # fmt: skip
    assert f"the output {images / 'a.png'} of {images / 'a.png'} would overwrite the input image" in message
    assert (images / "a.png").read_bytes() == before
    photo(images / "a_overlay.png")  # its mask a_overlay.png is the overlay of a.png in png format
    message = cli_error(["predict", "--checkpoint", str(ckpt), "--input", str(images), "--output",
                         str(tmp_path / "out"), "--overlay-format", "png"], capsys)  # fmt: skip
    assert "a.png and" in message and "a_overlay.png would both write" in message
    assert not (tmp_path / "out").exists()


OUT_OF_RANGE = [
    (["--alpha", "5"], "argument --alpha: expected a number in [0, 1], got 5"),
    (["--alpha", "-1"], "argument --alpha: expected a number in [0, 1], got -1"),
    (["--scales", "0"], "argument --scales: expected a number > 0, got 0"),
    (["--scales", "1", "-1"], "argument --scales: expected a number > 0, got -1"),
    (["--crop-size", "0", "0"], "argument --crop-size: expected a positive integer, got 0"),
    (["--stride", "0", "0"], "argument --stride: expected a positive integer, got 0"),
]


@pytest.mark.parametrize(
    "command, option, expected",
    [("predict", o, e) for o, e in OUT_OF_RANGE]
    + [("eval", o, e) for o, e in OUT_OF_RANGE if o[0] != "--alpha"],
)
def test_option_values_out_of_range_are_refused(
    command: str, option: list[str], expected: str, ckpt: Path, tmp_path: Path, capsys
) -> None:
    argv = ["predict", "--input", str(tmp_path), "--output", str(tmp_path / "out")] if command == "predict" \
        else ["eval", str(tmp_path / "c.yaml")]  # fmt: skip
    with pytest.raises(SystemExit) as exit_info:
        main([*argv, "--checkpoint", str(ckpt), *option])
    assert exit_info.value.code == 2
    assert expected in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_a_stride_larger_than_the_window_is_refused(ckpt: Path, tmp_path: Path, capsys) -> None:
    photo(tmp_path / "a.png")
    message = cli_error(["predict", "--checkpoint", str(ckpt), "--input", str(tmp_path / "a.png"), "--output",
                         str(tmp_path / "out"), "--mode", "slide", "--crop-size", "16", "16", "--stride", "20",
                         "8"], capsys)  # fmt: skip
    assert "--stride 20 8 is larger than the sliding window 16 16" in message


@pytest.fixture
def spy_infer(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, tuple[int, ...], dict]]:
    """Record (mode, input shape, keyword arguments) of every inference predict runs."""
    calls: list[tuple[str, tuple[int, ...], dict]] = []
    real = ladseg.engine.inference.infer

    def spy(model, x, mode="whole", **kwargs):
        calls.append((mode, tuple(x.shape), kwargs))
        return real(model, x, mode, **kwargs)

    monkeypatch.setattr(ladseg.engine.inference, "infer", spy)
    return calls


def test_predict_follows_the_checkpoints_eval_settings(ckpt: Path, tmp_path: Path, spy_infer) -> None:
    trained = with_eval_settings(ckpt, eval={"mode": "slide", "crop_size": None, "stride": [8, 8]},
                                 data={"crop_size": [16, 16], "resize_ratio": 1.0})  # fmt: skip
    image = photo(tmp_path / "a.png", size=(40, 40))
    assert predict(trained, image, tmp_path / "default") == 0
    assert spy_infer[-1] == ("slide", (1, 3, 40, 40), {"crop_size": [16, 16], "stride": [8, 8]})
    assert predict(trained, image, tmp_path / "explicit", "--mode", "slide", "--crop-size", "16", "16",
                   "--stride", "8", "8") == 0  # fmt: skip
    assert (tmp_path / "default" / "a.png").read_bytes() == (tmp_path / "explicit" / "a.png").read_bytes()
    assert predict(trained, image, tmp_path / "whole", "--mode", "whole") == 0  # an option still wins
    assert spy_infer[-1][0] == "whole"


def test_predict_resizes_like_training_and_writes_the_full_size(
    ckpt: Path, tmp_path: Path, spy_infer
) -> None:
    trained = with_eval_settings(ckpt, eval={"mode": "whole"}, data={"resize_ratio": 0.5})
    assert predict(trained, photo(tmp_path / "a.png", size=(40, 64)), tmp_path / "out") == 0
    assert spy_infer[-1][:2] == ("whole", (1, 3, 20, 32))  # the network sees what it was trained on
    assert Image.open(tmp_path / "out" / "a.png").size == (64, 40)  # the mask fits the image


def test_help_says_where_the_mode_comes_from(capsys) -> None:
    with pytest.raises(SystemExit):
        main(["predict", "--help"])
    assert "the checkpoint's eval settings" in " ".join(capsys.readouterr().out.split())


def test_a_rotated_photo_gets_a_mask_of_its_displayed_size(ckpt: Path, tmp_path: Path) -> None:
    stored = np.zeros((24, 48, 3), dtype=np.uint8)
    photo_path = write_rotated_photo(tmp_path / "portrait.jpg", stored)
    assert predict(ckpt, photo_path, tmp_path / "out") == 0
    assert Image.open(tmp_path / "out" / "portrait.png").size == (24, 48)
    assert Image.open(tmp_path / "out" / "portrait_overlay.jpg").size == (24, 48)


def test_bad_files_are_listed_after_every_good_one_is_done(ckpt: Path, tmp_path: Path, capsys) -> None:
    images = tmp_path / "in"
    images.mkdir()
    for i in range(4):
        photo(images / f"{i}.png", seed=i)
    (images / "1.png").write_bytes((images / "1.png").read_bytes()[:100])  # truncated
    (images / "notes.jpg").write_text("not an image")
    assert predict(ckpt, images, tmp_path / "out") == 1
    captured = capsys.readouterr()
    assert "wrote 3 masks" in captured.out
    assert sorted(p.name for p in (tmp_path / "out").glob("*[0-9].png")) == ["0.png", "2.png", "3.png"]
    err = captured.err
    assert "Traceback" not in err
    assert "2 of 5 images could not be read:" in err
    assert (
        f"cannot read image {images / '1.png'}" in err and f"cannot read image {images / 'notes.jpg'}" in err
    )
    assert "5/5" in err  # the progress bar went through the whole folder


def test_broken_links_in_the_input_folder_are_listed(ckpt: Path, tmp_path: Path, capsys) -> None:
    images = tmp_path / "in"
    images.mkdir()
    photo(images / "good.png")
    (images / "loop.png").symlink_to(images / "loop.png")
    (images / "gone.jpg").symlink_to(tmp_path / "elsewhere.jpg")
    assert predict(ckpt, images, tmp_path / "out") == 1
    err = capsys.readouterr().err
    assert "2 of 3 images could not be read:" in err
    assert f"cannot read image {images / 'loop.png'}: it is a symbolic link loop" in err
    assert (
        f"cannot read image {images / 'gone.jpg'}: it is a dangling symbolic link to {tmp_path / 'elsewhere.jpg'}"
        in err
    )
    assert (tmp_path / "out" / "good.png").is_file()


def test_a_link_loop_as_input_is_called_a_loop(ckpt: Path, tmp_path: Path, capsys) -> None:
    (tmp_path / "loop").symlink_to(tmp_path / "loop")
    message = cli_error(["predict", "--checkpoint", str(ckpt), "--input", str(tmp_path / "loop"),
                         "--output", str(tmp_path / "out")], capsys)  # fmt: skip
    assert message == f"--input {tmp_path / 'loop'} is a symbolic link loop"


def test_the_api_takes_a_settings_object_under_its_keywords(ckpt: Path) -> None:
    from ladseg import load
    from ladseg.engine.inference_settings import InferenceSettings

    trained = with_eval_settings(ckpt, eval={"mode": "slide", "stride": [8, 8]}, data={"crop_size": [16, 16]})
    settings = InferenceSettings(mode="multiscale", scales=[0.5, 1.0])
    chosen = load(trained, "cpu", settings=settings).settings  # replaces the saved eval section
    assert (chosen.mode, chosen.scales, chosen.stride, chosen.crop_size) == (
        "multiscale",
        [0.5, 1.0],
        None,
        [16, 16],
    )
    chosen = load(
        trained, "cpu", settings=settings, mode="whole", flip=True
    ).settings  # keywords win, flip adds
    assert (chosen.mode, chosen.scales, chosen.flip) == ("whole", [0.5, 1.0], True)

"""Images as cameras and tools write them: EXIF-rotated photos, 16-bit PNGs, very large files."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from reliability_helpers import cli_error, write_config, write_png16_rgb, write_rotated_photo

from ladseg.data import build_dataset
from ladseg.data.base import PIXEL_LIMIT_ENV, read_image
from ladseg.errors import DatasetError


def portrait_stored_sideways() -> np.ndarray:
    """24 x 48 (H x W) as stored: the top half white, the bottom half black."""
    stored = np.zeros((24, 48, 3), dtype=np.uint8)
    stored[:12] = 255
    return stored


def test_exif_orientation_is_applied(tmp_path: Path) -> None:
    """Orientation 6 is shown turned 90 degrees clockwise: 48 x 24, the white half on the right."""
    rgb = read_image(write_rotated_photo(tmp_path / "portrait.jpg", portrait_stored_sideways()))
    assert rgb.shape == (48, 24, 3)
    assert rgb[:, 14:].mean() > 240 and rgb[:, :10].mean() < 15


def test_a_phone_photo_pairs_with_a_mask_drawn_on_the_displayed_image(tiny_root: Path) -> None:
    (tiny_root / "images" / "train" / "000.png").unlink()
    write_rotated_photo(tiny_root / "images" / "train" / "000.jpg", portrait_stored_sideways())
    mask = np.zeros((48, 24), dtype=np.uint8)
    mask[:, 12:] = 1  # the white half, as the labelling tool showed it
    Image.fromarray(mask).save(tiny_root / "masks" / "train" / "000.png")
    item = build_dataset("folder", tiny_root, "train")[0]
    assert item["image"].shape == (48, 24, 3)
    white = item["image"].mean(axis=2) > 128
    assert (white == (item["mask"] == 1)).mean() > 0.95


def test_16_bit_greyscale_is_scaled_not_clipped(tmp_path: Path) -> None:
    values = np.linspace(0, 65535, 16 * 16).round().astype(np.uint16).reshape(16, 16)
    Image.fromarray(values).save(tmp_path / "grey16.png")
    assert Image.open(tmp_path / "grey16.png").mode.startswith("I")  # really 16-bit on disk
    rgb = read_image(tmp_path / "grey16.png")
    assert rgb.dtype == np.uint8 and rgb.shape == (16, 16, 3)
    expected = np.round(values / 257.0).astype(np.uint8)
    for c in range(3):
        np.testing.assert_array_equal(rgb[..., c], expected)
    assert (rgb == 255).mean() < 0.01  # not a white image


def test_16_bit_rgb_keeps_its_colours(tmp_path: Path) -> None:
    deep = np.zeros((8, 8, 3), dtype=np.uint16)
    deep[..., 0], deep[..., 1], deep[..., 2] = 40000, 1000, 65535
    rgb = read_image(write_png16_rgb(tmp_path / "rgb16.png", deep))
    np.testing.assert_allclose(rgb[0, 0], np.round(deep[0, 0] / 257.0), atol=1)


@pytest.fixture
def pixel_limit(monkeypatch: pytest.MonkeyPatch):
    """Set Pillow's limit for the test only (restored afterwards even if the code changed it)."""
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", Image.MAX_IMAGE_PIXELS)

    def set_limit(pillow: int | None = None, env: str | None = None) -> None:
        if pillow is not None:
            monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", pillow)
        if env is None:
            monkeypatch.delenv(PIXEL_LIMIT_ENV, raising=False)
        else:
            monkeypatch.setenv(PIXEL_LIMIT_ENV, env)

    return set_limit


def test_a_too_large_image_says_how_to_allow_it(tmp_path: Path, pixel_limit) -> None:
    """32 x 32 = 1024 pixels is more than twice a limit of 100: Pillow's decompression-bomb error."""
    path = tmp_path / "big.png"
    Image.fromarray(np.zeros((32, 32, 3), dtype=np.uint8)).save(path)
    pixel_limit(pillow=100)
    with pytest.raises(DatasetError, match=rf"image .*big\.png is too large .*{PIXEL_LIMIT_ENV}=<pixels>"):
        read_image(path)
    pixel_limit(env="2000")  # the way the message gives
    assert read_image(path).shape == (32, 32, 3)
    pixel_limit(env="0")  # no limit
    assert read_image(path).shape == (32, 32, 3)
    pixel_limit(env="100")
    with pytest.raises(DatasetError, match="too large"):
        read_image(path)


def test_too_large_image_in_training_is_one_line(
    tiny_root: Path, tmp_path: Path, capsys, pixel_limit
) -> None:
    pixel_limit(env="400")  # the 32 x 32 images of the tiny dataset are over twice that
    cfg = write_config(tmp_path / "c.yaml", tiny_root, tmp_path / "run")
    message = cli_error(["train", str(cfg)], capsys)
    assert (
        "is too large to read safely" in message and f"{PIXEL_LIMIT_ENV}=<pixels> (0 = no limit)" in message
    )


def test_a_bad_pixel_limit_is_a_config_error(tmp_path: Path, pixel_limit) -> None:
    from ladseg.errors import ConfigError

    Image.fromarray(np.zeros((4, 4, 3), dtype=np.uint8)).save(tmp_path / "x.png")
    pixel_limit(env="lots")
    with pytest.raises(ConfigError, match=f"{PIXEL_LIMIT_ENV}='lots': expected a number of pixels"):
        read_image(tmp_path / "x.png")


def test_a_float_tiff_in_0_1_with_an_overshoot_is_not_black(tmp_path: Path) -> None:
    """One pixel at 1.01 made the image read as 0..255 (black); it widens the 0..1 range instead."""
    values = np.linspace(0, 1, 16 * 16, dtype=np.float32).reshape(16, 16)
    values[0, 0] = 1.01
    Image.fromarray(values).save(tmp_path / "f.tif")
    assert Image.open(tmp_path / "f.tif").mode == "F"
    rgb = read_image(tmp_path / "f.tif")
    expected = np.round(values.astype(np.float64) * 255 / 1.01).astype(np.uint8)
    assert rgb.shape == (16, 16, 3) and np.abs(rgb[..., 0].astype(int) - expected).max() <= 1
    assert rgb.mean() > 100  # mid-grey on average, not black
    plain = values.copy()
    plain[0, 0] = 0.5  # within 0..1 it is read as before: * 255
    Image.fromarray(plain).save(tmp_path / "g.tif")
    np.testing.assert_array_equal(
        read_image(tmp_path / "g.tif")[..., 1], np.round(plain * 255.0).astype(np.uint8)
    )


@pytest.mark.parametrize("top", [1.0, 255.0])
def test_a_float_rgb_tiff_is_read_with_its_colours(tmp_path: Path, top: float) -> None:
    import tifffile

    rng = np.random.default_rng(0)
    values = (rng.random((12, 10, 3)) * top).astype(np.float32)
    values[0, 0] = (top, 0, 0)  # the full range is used
    tifffile.imwrite(tmp_path / "rgb.tif", values, photometric="rgb")
    rgb = read_image(tmp_path / "rgb.tif")
    assert rgb.shape == (12, 10, 3)
    expected = np.round(values.astype(np.float64) * 255.0 / top).astype(np.uint8)
    assert np.abs(rgb.astype(int) - expected).max() <= 1
    assert tuple(rgb[0, 0]) == (255, 0, 0)


def test_a_float_image_with_nan_is_refused_in_one_line(tmp_path: Path) -> None:
    values = np.full((8, 8), 0.5, dtype=np.float32)
    values[2, 2] = np.nan
    Image.fromarray(values).save(tmp_path / "nan.tif")
    with pytest.raises(DatasetError, match=r"nan\.tif holds 1 NaN or infinite value"):
        read_image(tmp_path / "nan.tif")


def _animated(path: Path) -> Path:
    frames = [Image.fromarray(np.full((8, 8, 3), v, np.uint8)) for v in (30, 200, 90)]
    frames[0].save(path, save_all=True, append_images=frames[1:])
    return path


@pytest.mark.parametrize("name", ["anim.gif", "anim.png", "pages.tif"])
def test_an_animated_image_says_its_first_frame_is_used(tmp_path: Path, capsys, name: str) -> None:
    path = _animated(tmp_path / name)
    assert Image.open(path).n_frames == 3
    rgb = read_image(path)
    assert abs(int(rgb.mean()) - 30) <= 2  # the first frame
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [f"warning: image {path} has 3 frames (animated or multi-page); its first frame is used"]
    read_image(path)  # said once per file
    assert capsys.readouterr().err == ""


def test_broken_links_in_a_dataset_folder_are_reported(tiny_root: Path, tmp_path: Path, capsys) -> None:
    images = tiny_root / "images" / "train"
    (images / "loop.png").symlink_to(images / "loop.png")
    (images / "gone.png").symlink_to(tmp_path / "moved-away.png")
    with pytest.raises(DatasetError, match=r"gone\.png|loop\.png") as caught:
        build_dataset("folder", tiny_root, "train")
    assert "dangling symbolic link" in str(caught.value) or "symbolic link loop" in str(caught.value)
    cfg = write_config(tmp_path / "c.yaml", tiny_root, tmp_path / "run")
    from ladseg.cli import main

    assert main(["check-data", str(cfg), "--split", "train"]) == 1
    out = capsys.readouterr().out
    assert f"missing image (a symbolic link loop): {images / 'loop.png'}" in out
    assert (
        f"missing image (a dangling symbolic link to {tmp_path / 'moved-away.png'}): {images / 'gone.png'}"
        in out
    )

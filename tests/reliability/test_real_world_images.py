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

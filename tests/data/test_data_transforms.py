"""Joint transforms: image and mask stay aligned, padding is 255, normalisations invert."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy import ndimage

from ladseg.data import NORMALIZATIONS, build_transforms, denormalize
from ladseg.errors import ConfigError

COLOURS = np.array([[230, 20, 20], [20, 230, 20], [20, 20, 230], [230, 230, 230]], dtype=np.uint8)


def blocky_sample(h: int = 48, w: int = 64, seed: int = 0) -> dict:
    """Image whose colour encodes the class of each 8x8 block (mask computable from the image)."""
    blocks = np.random.default_rng(seed).integers(0, 4, size=(h // 8, w // 8))
    mask = np.kron(blocks, np.ones((8, 8), dtype=np.int64))
    return {"image": COLOURS[mask], "mask": mask.astype(np.int64), "name": "x"}


def classes_from_image(image: np.ndarray) -> np.ndarray:
    dist = ((image[:, :, None, :].astype(np.int64) - COLOURS[None, None].astype(np.int64)) ** 2).sum(-1)
    return dist.argmin(-1)


@pytest.mark.parametrize("seed", range(6))
def test_train_transform_keeps_image_and_mask_aligned(seed: int) -> None:
    torch.manual_seed(seed)
    t = build_transforms(train=True, crop_size=(40, 40), scale_range=(0.5, 2.0))
    out = t(blocky_sample(seed=seed))
    image, mask = out["image"], out["mask"]
    assert image.dtype == torch.float32 and image.shape == (3, 40, 40)
    assert mask.dtype == torch.int64 and mask.shape == (40, 40) and out["name"] == "x"
    m = mask.numpy()
    # interior pixels: the whole 3x3 neighbourhood has one valid label
    interior = (ndimage.maximum_filter(m, 3) == ndimage.minimum_filter(m, 3)) & (m != 255)
    assert interior.sum() > 200
    derived = classes_from_image(denormalize(image))
    assert (derived[interior] == m[interior]).mean() == 1.0
    assert set(np.unique(m).tolist()) <= {0, 1, 2, 3, 255}  # nearest: no new or blended ids


def test_flip_moves_image_and_mask_together() -> None:
    sample = blocky_sample(seed=3)
    t = build_transforms(train=True, crop_size=(48, 64), scale_range=(1.0, 1.0))
    flips = set()
    for _ in range(20):
        out = t(sample)
        m = out["mask"].numpy()
        flipped = np.array_equal(m, sample["mask"][:, ::-1])
        assert flipped or np.array_equal(m, sample["mask"])
        expected = sample["image"][:, ::-1] if flipped else sample["image"]
        assert np.abs(denormalize(out["image"]).astype(int) - expected).max() <= 1
        flips.add(flipped)
    assert flips == {True, False}


@pytest.mark.parametrize("normalize", sorted(NORMALIZATIONS))
def test_padding_is_the_mean_colour_and_ignore(normalize: str) -> None:
    """As the reference: pad bottom/right with 0 after normalisation (the mean colour), label ignore."""
    sample = blocky_sample(h=16, w=24)
    t = build_transforms(
        train=True, crop_size=(32, 40), scale_range=(1.0, 1.0), flip=False, normalize=normalize
    )
    out = t(sample)
    m = out["mask"].numpy()
    pad = m == 255
    assert pad.sum() == 32 * 40 - 16 * 24 and not pad[:16, :24].any()  # the image stays top-left
    assert np.array_equal(m[:16, :24], sample["mask"])
    assert (out["image"][:, torch.from_numpy(pad)] == 0).all()  # exactly 0: the mean colour
    assert out["image"][:, :16, :24].abs().sum() > 0
    black = build_transforms(train=True, crop_size=(32, 40), scale_range=(1.0, 1.0), flip=False,
                             normalize=normalize, pad="black")(sample)  # fmt: skip
    assert (denormalize(black["image"], normalize)[pad] == 0).all()  # the old behaviour, on request
    assert torch.equal(black["image"][:, :16, :24], out["image"][:, :16, :24])


def test_val_transform_only_normalises() -> None:
    sample = blocky_sample(h=24, w=40)
    for name in NORMALIZATIONS:
        out = build_transforms(train=False, normalize=name)(sample)
        assert out["image"].shape == (3, 24, 40) and out["image"].dtype == torch.float32
        assert torch.equal(out["mask"], torch.from_numpy(sample["mask"]))
        assert np.array_equal(denormalize(out["image"], name), sample["image"])


def test_normalizations_match_the_conventions() -> None:
    red = {
        "image": np.tile(np.array([255, 0, 0], dtype=np.uint8), (2, 2, 1)),
        "mask": np.zeros((2, 2), np.int64),
    }
    x = build_transforms(train=False, normalize="imagenet")(red)["image"][:, 0, 0]
    assert torch.allclose(x, torch.tensor([(1 - 0.485) / 0.229, -0.456 / 0.224, -0.406 / 0.225]), atol=1e-5)
    y = build_transforms(train=False, normalize="reference_bgr")(red)["image"][:, 0, 0]
    assert torch.allclose(y, torch.tensor([-104.00698793, -116.66876762, 255 - 122.67891434]), atol=1e-4)
    # the label channel keeps the reference's label-to-image ratio: x100 on std-1 input
    assert NORMALIZATIONS["reference_bgr"].label_scale == 100.0
    imagenet_std = 255 * (0.229 + 0.224 + 0.225) / 3
    assert abs(NORMALIZATIONS["imagenet"].label_scale - 100 / imagenet_std) < 1e-9
    assert 1.73 < NORMALIZATIONS["imagenet"].label_scale < 1.75


def test_photometric_changes_image_not_mask() -> None:
    sample = blocky_sample()
    t = build_transforms(train=True, crop_size=(48, 64), scale_range=(1.0, 1.0), flip=False, photometric=True)
    outs = [t(sample) for _ in range(3)]
    for out in outs:
        assert np.array_equal(out["mask"].numpy(), sample["mask"])
    assert any(not np.array_equal(denormalize(o["image"]), sample["image"]) for o in outs)


def test_bad_settings() -> None:
    with pytest.raises(ConfigError, match="crop_size"):
        build_transforms(train=True)
    with pytest.raises(ConfigError, match="valid: imagenet, reference_bgr"):
        build_transforms(train=False, normalize="caffe")
    with pytest.raises(ConfigError, match="scale_range"):
        build_transforms(train=True, crop_size=(8, 8), scale_range=(2.0, 1.0))

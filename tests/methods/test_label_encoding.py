"""Invariants of the LAD label encoding (reference: random per-image class codes + noise)."""

from __future__ import annotations

import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode

from ladseg.errors import ConfigError
from ladseg.methods.label_encoding import (
    ENCODING_INFO,
    VECTOR_CHANNELS,
    CorruptionParams,
    EncoderParams,
    LabelEncoder,
    channels,
    corrupt_labels,
    fixed_codes,
)


def _mask(n: int = 2, k: int = 4, size: int = 32, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    m = (
        torch.randint(0, k, (n, size // 8, size // 8), generator=g)
        .repeat_interleave(8, 1)
        .repeat_interleave(8, 2)
    )
    m[:, :8, :8] = 255
    return m


def _enc(k: int = 4, **kw: object) -> LabelEncoder:
    return LabelEncoder(EncoderParams.from_dict(dict(kw)), k)


def test_same_class_same_code_within_image_without_noise() -> None:
    mask = _mask()
    codes = _enc(noise=0.0)(mask)
    assert codes.shape == (2, 1, 32, 32)
    for n in range(2):
        for c in [*range(4), 255]:
            values = codes[n, 0][mask[n] == c]
            if values.numel():
                assert torch.allclose(values, values[0].expand_as(values))
        # different classes get different codes (continuous draws never tie)
        present = [codes[n, 0][mask[n] == c][0].item() for c in [*range(4), 255] if (mask[n] == c).any()]
        assert len(set(present)) == len(present)


def test_codes_differ_across_images_and_calls() -> None:
    mask = _mask(n=2)
    mask[1] = mask[0]
    enc = _enc(noise=0.0)
    e1, e2 = enc(mask), enc(mask)
    assert not torch.allclose(e1[0], e1[1])  # same label, different images -> different codes
    assert not torch.allclose(e1, e2)  # two paths -> independent codes


def test_ignore_is_class_k_with_its_own_code() -> None:
    mask = torch.full((1, 8, 8), 255)
    mask[0, :, :4] = 0
    codes = _enc(k=2, noise=0.0)(mask, fixed=True)
    assert torch.allclose(codes[0, 0, :, 4:], torch.full((8, 4), (2 - 3 // 2) / 10))
    assert torch.allclose(codes[0, 0, :, :4], torch.full((8, 4), (0 - 3 // 2) / 10))


def test_fixed_codes_evenly_spaced_voc() -> None:
    codes = fixed_codes(21)
    assert codes.shape == (22,)
    assert torch.allclose(codes, (torch.arange(22.0) - 11) / 10)
    mask = torch.arange(21).view(1, 3, 7)
    out = _enc(k=21, noise=0.0)(mask, fixed=True)
    assert torch.allclose(out.flatten(), (torch.arange(21.0) - 11) / 10)


def test_noise_std_and_scale() -> None:
    mask = torch.zeros(4, 64, 64, dtype=torch.long)
    enc = _enc(k=3, noise=0.03)
    out = enc(mask, fixed=True)
    resid = out - fixed_codes(3)[0]
    assert abs(resid.std().item() - 0.03) < 0.002
    assert abs(resid.mean().item()) < 0.002
    scaled = _enc(k=3, noise=0.0, scale=100.0)(mask, fixed=True)
    assert torch.allclose(scaled, torch.full_like(scaled, 100 * fixed_codes(3)[0].item()))
    assert abs(enc(mask, fixed=True, noise=0.02).sub(fixed_codes(3)[0]).std().item() - 0.02) < 0.002


def test_random_codes_are_standard_normal() -> None:
    mask = torch.arange(5).repeat(2000, 1).view(2000, 1, 5)  # 2000 images x 5 classes
    out = _enc(k=5, noise=0.0)(mask).flatten()
    assert abs(out.mean().item()) < 0.05 and abs(out.std().item() - 1) < 0.05


def test_generator_makes_it_reproducible_and_grad_free() -> None:
    mask = _mask()
    enc = _enc()
    a = enc(mask, generator=torch.Generator().manual_seed(3))
    b = enc(mask, generator=torch.Generator().manual_seed(3))
    assert torch.equal(a, b)
    assert not a.requires_grad
    with torch.enable_grad():
        assert not enc(mask).requires_grad


def test_onehot_channels() -> None:
    assert channels("random_codes", 21) == 1 and channels("onehot", 21) == 22
    mask = _mask(k=4)
    out = _enc(k=4, kind="onehot", noise=0.0)(mask)
    assert out.shape == (2, 5, 32, 32)
    assert torch.equal(out.argmax(1), torch.where(mask == 255, 4, mask))


class _CountOps(TorchDispatchMode):
    def __init__(self) -> None:
        super().__init__()
        self.count = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):  # noqa: ANN001
        self.count += 1
        return func(*args, **(kwargs or {}))


def _ops(enc: LabelEncoder, mask: torch.Tensor, **kw: object) -> int:
    with _CountOps() as counter:
        enc(mask, **kw)
    return counter.count


@pytest.mark.parametrize("kw", [{}, {"fixed": True}])
def test_vectorised_op_count_independent_of_batch_and_classes(kw: dict) -> None:
    """No Python loop over images or classes: the number of tensor ops does not grow with N or K."""
    corruption = {"flip_prob": 0.3, "jitter_prob": 0.5, "drop_prob": 0.1}
    # the fixed codes have two closed forms (the reference's up to 21 classes, quantiles beyond): compare within each
    for k_small, k_large in ((3, 21), (22, 150)):
        small = _ops(_enc(k=k_small, corruption=corruption), torch.randint(0, k_small, (2, 8, 8)), **kw)
        mask = torch.randint(0, k_large, (16, 64, 64))
        large = _ops(_enc(k=k_large, corruption=corruption), mask, **kw)
        assert large == small


def test_bad_inputs() -> None:
    with pytest.raises(ValueError, match="outside"):
        _enc(k=3)(torch.full((1, 4, 4), 7))
    with pytest.raises(ConfigError, match="valid"):
        EncoderParams.from_dict({"noize": 0.1})
    with pytest.raises(ConfigError, match="kind"):
        EncoderParams.from_dict({"kind": "gray"})
    with pytest.raises(ConfigError, match="corruption"):
        EncoderParams.from_dict({"corruption": {"flip": 1}})


def test_corruptions() -> None:
    mask = _mask(n=8, k=4, size=64)
    label = torch.where(mask == 255, 4, mask)
    g = torch.Generator().manual_seed(0)
    flipped = corrupt_labels(label, 4, CorruptionParams(flip_prob=1.0), g)
    # whole class regions are relabelled consistently; ignore stays ignore
    assert torch.equal(flipped == 4, label == 4)
    for n in range(8):
        for c in range(4):
            assert flipped[n][label[n] == c].unique().numel() <= 1
    dropped = corrupt_labels(label, 4, CorruptionParams(drop_prob=0.5, region_size=16), g)
    changed = dropped != label
    assert changed.any() and (dropped[changed] == 4).all()
    jittered = corrupt_labels(label, 4, CorruptionParams(jitter_prob=1.0, jitter_radius=2), g)
    diff = jittered != label
    assert diff.any() and (label[diff] != 4).all()  # ignore pixels never change
    assert diff.float().mean() < 0.5  # only near boundaries
    assert torch.equal(corrupt_labels(label, 4, CorruptionParams(), g), label)
    # corruption applies to training (random) codes only
    enc = _enc(k=4, noise=0.0, corruption={"drop_prob": 1.0})
    out = enc(mask)  # everything dropped -> one ignore code per image
    assert torch.allclose(out, out[:, :, :1, :1].expand(-1, -1, 64, 64))
    fixed = enc(mask, fixed=True)
    assert not torch.allclose(fixed, fixed[:, :, :1, :1].expand(-1, -1, 64, 64))


# -- fixed codes for many classes (issue 14, item 6) --------------------------------------------
@pytest.mark.parametrize("num_classes", [1, 11, 19, 21])
def test_fixed_codes_are_the_references_up_to_21_classes(num_classes: int) -> None:
    k = torch.arange(num_classes + 1, dtype=torch.float32)
    assert torch.equal(fixed_codes(num_classes), (k - (num_classes + 1) // 2) / 10)


@pytest.mark.parametrize("num_classes", [22, 150, 171])
def test_fixed_codes_for_many_classes_stay_in_the_trained_range(num_classes: int) -> None:
    codes = fixed_codes(num_classes)
    old = (torch.arange(num_classes + 1) - (num_classes + 1) // 2) / 10
    assert codes.abs().max() < 3.0 and (num_classes < 150 or old.abs().max() > 7)  # N(0, 1)'s range
    assert len(set(codes.tolist())) == num_classes + 1  # one code per class and ignore
    assert abs(codes.mean().item()) < 1e-5 and codes.std().item() == pytest.approx(1.0, abs=0.01)
    p = (torch.arange(num_classes + 1, dtype=torch.float64) + 0.5) / (num_classes + 1)
    quantiles = (2**0.5 * torch.erfinv(2 * p - 1)).float()
    torch.testing.assert_close(codes.sort().values, quantiles)  # the N(0, 1) quantiles
    assert (codes[1:] - codes[:-1]).abs().min() > 0.5  # neighbouring ids get distant codes


def test_identity_free_encodings_group_pixels_without_naming_classes() -> None:
    mask = _mask(n=2, k=4, seed=3)
    label = LabelEncoder(EncoderParams(), 4).to_class_index(mask)
    vec = _enc(kind="random_vectors", noise=0.0)(mask)
    assert vec.shape == (2, VECTOR_CHANNELS, 32, 32) and channels("random_vectors", 4) == VECTOR_CHANNELS
    for n in range(2):
        for c in label[n].unique().tolist():
            pix = vec[n][:, label[n] == c]
            torch.testing.assert_close(pix, pix[:, :1].expand_as(pix))  # one vector per class region
    other = _enc(kind="random_vectors", noise=0.0)(mask)
    assert not torch.allclose(vec, other)  # drawn afresh per call: the vector does not name the class
    fixed = _enc(kind="random_vectors", noise=0.0)(mask, fixed=True)
    torch.testing.assert_close(fixed, _enc(kind="random_vectors", noise=0.0)(mask, fixed=True))

    edges = _enc(kind="boundary", noise=0.0)(mask)
    assert edges.shape == (2, 1, 32, 32) and set(edges.unique().tolist()) <= {0.0, 1.0}
    # a pixel is an edge exactly when its 3x3 neighbourhood holds two classes (ignore counts as one)
    padded = torch.nn.functional.pad(label[:, None].float(), (1, 1, 1, 1), mode="replicate")
    windows = padded.unfold(2, 3, 1).unfold(3, 3, 1).flatten(-2)
    expected = (windows.amax(-1) != windows.amin(-1)).float()
    torch.testing.assert_close(edges, expected)
    relabelled = torch.where(mask == 255, mask, (mask + 1) % 4)  # other classes, same regions
    torch.testing.assert_close(_enc(kind="boundary", noise=0.0)(relabelled), edges)
    both = _enc(kind="boundary_codes", noise=0.0)(mask, fixed=True)
    assert both.shape == (2, 2, 32, 32)
    torch.testing.assert_close(both[:, 1:], edges)
    assert [ENCODING_INFO[k].reveals_identity for k in ("onehot", "random_codes", "boundary")] == [
        True,
        False,
        False,
    ]

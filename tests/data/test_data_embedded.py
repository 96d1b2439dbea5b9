"""The embedded dataset: deterministic, disjoint train/val sources, every class present."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from ladseg.data import EMBEDDED_CLASSES, build_dataset, default_root, generate_embedded
from ladseg.data.embedded import CAMOUFLAGE_DEMO, STAMP, _camouflage, _load_sources, _texture
from ladseg.errors import DatasetError

SMALL = {"num_train": 24, "num_val": 8, "size": 64}


@pytest.fixture(scope="module")
def small_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return generate_embedded(tmp_path_factory.mktemp("emb") / "embedded", seed=0, **SMALL)


def arrays(root: Path, split: str, name: str) -> tuple[np.ndarray, np.ndarray]:
    image = np.asarray(Image.open(root / "images" / split / f"{name}.png"))
    mask = np.asarray(Image.open(root / "masks" / split / f"{name}.png"))
    return image, mask


def test_layout_and_values(small_root: Path) -> None:
    train = build_dataset("embedded", small_root, "train", **SMALL)
    val = build_dataset("embedded", small_root, "val", **SMALL)
    assert (len(train), len(val)) == (24, 8)
    assert train.classes == EMBEDDED_CLASSES and train.palette.shape == (len(EMBEDDED_CLASSES), 3)
    item = train[0]
    assert item["image"].shape == (64, 64, 3) and item["image"].dtype == np.uint8
    assert item["mask"].shape == (64, 64) and item["mask"].dtype == np.int64
    assert Image.open(small_root / "masks" / "train" / "train_0000.png").mode == "P"


def test_every_class_present_and_an_ignore_band(small_root: Path) -> None:
    ds = build_dataset("embedded", small_root, "train", **SMALL)
    counts = sum(np.bincount(ds[i]["mask"].ravel(), minlength=256) for i in range(len(ds)))
    k = len(EMBEDDED_CLASSES)
    freq = counts[:k] / counts.sum()
    assert (freq > 0.005).all(), freq  # 24 small images: each object class covers about 1-7 %
    assert counts[k:255].sum() == 0
    assert 0.01 < counts[255] / counts.sum() < 0.2  # a thin band, not the bulk


def test_deterministic_and_independent_of_split_sizes(small_root: Path, tmp_path: Path) -> None:
    again = generate_embedded(tmp_path / "again", seed=0, num_train=5, num_val=2, size=64)
    other = generate_embedded(tmp_path / "other", seed=1, num_train=5, num_val=2, size=64)
    for split, n in (("train", 5), ("val", 2)):
        for i in range(n):
            name = f"{split}_{i:04d}"
            a, b = arrays(small_root, split, name), arrays(again, split, name)
            assert np.array_equal(a[0], b[0]) and np.array_equal(a[1], b[1])
    assert not np.array_equal(
        arrays(small_root, "train", "train_0000")[0], arrays(other, "train", "train_0000")[0]
    )


def test_train_and_val_use_disjoint_parts_of_every_source(small_root: Path) -> None:
    manifest = json.loads((small_root / "manifest.json").read_text())
    sources = manifest["sources"]
    seen = {"train": set(), "val": set()}
    for key, regions in manifest["items"].items():
        split = key.split("/")[0]
        for r in regions:
            y0, x0, y1, x1 = r["box"]
            cut = sources[r["source"]]["split_col"]
            assert (x1 <= cut) if split == "train" else (x0 >= cut), (key, r)
            seen[split].add(r["source"])
    assert len(seen["train"]) >= 8 and len(seen["val"]) >= 8
    # and directly on the sampler, many draws per source
    loaded, rng = _load_sources(), np.random.default_rng(0)
    for src in loaded.values():
        for _ in range(20):
            assert _texture(rng, src, "train", 128)[1][3] <= src.split_col
            assert _texture(rng, src, "val", 128)[1][1] >= src.split_col


def test_stale_copy_is_regenerated_and_foreign_folder_refused(tmp_path: Path) -> None:
    root = generate_embedded(tmp_path / "e", num_train=2, num_val=1, size=32)
    before = arrays(root, "train", "train_0001")
    stamp = json.loads((root / STAMP).read_text())
    (root / STAMP).write_text(json.dumps({**stamp, "generator_version": -1}))
    (root / "masks" / "train" / "train_0001.png").unlink()
    generate_embedded(root, num_train=2, num_val=1, size=32)
    assert json.loads((root / STAMP).read_text()) == stamp
    after = arrays(root, "train", "train_0001")
    assert np.array_equal(before[0], after[0]) and np.array_equal(before[1], after[1])
    foreign = tmp_path / "mine"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("keep me")
    with pytest.raises(DatasetError, match="not an embedded dataset"):
        generate_embedded(foreign, num_train=2, num_val=1, size=32)
    assert (foreign / "notes.txt").exists()


def test_default_root_follows_ladseg_data(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LADSEG_DATA", str(tmp_path))
    assert default_root() == tmp_path / "embedded"
    ds = build_dataset("embedded", None, "val", num_train=2, num_val=1, size=32)
    assert ds.root == tmp_path / "embedded" and len(ds) == 1
    with pytest.raises(DatasetError, match="valid splits: train, val"):
        build_dataset("embedded", None, "test", num_train=2, num_val=1, size=32)


def test_camouflaged_regions_take_the_colour_of_what_they_cover(small_root: Path, tmp_path: Path) -> None:
    """A camouflaged region keeps its texture but loses its colour: its edge shows only as texture."""
    rng = np.random.default_rng(0)
    mask = np.zeros((32, 32), dtype=bool)
    mask[8:24, 8:24] = True
    canvas = np.broadcast_to(np.array([0.2, 0.3, 0.7], dtype=np.float32), (32, 32, 3)).copy()
    tex = np.clip(np.array([0.8, 0.3, 0.2]) + rng.normal(0, 0.05, (32, 32, 3)), 0, 1).astype(np.float32)
    out = _camouflage(tex, canvas, mask)
    np.testing.assert_allclose(out[mask].mean(axis=0), canvas[mask].mean(axis=0), atol=0.01)
    np.testing.assert_allclose(out[mask].std(axis=0), tex[mask].std(axis=0), rtol=0.1)

    # the default draws none; camouflage=p draws it for about p of the object regions, recorded per region
    def flags(root: Path, label: int | None = None) -> list[bool]:
        manifest = json.loads((root / "manifest.json").read_text())
        regions = [r for rs in manifest["items"].values() for r in rs]
        return [
            r["camouflaged"] for r in regions if (r["label"] > 0 if label is None else r["label"] == label)
        ]

    assert not any(flags(small_root))
    camo = generate_embedded(tmp_path / "camo", seed=0, camouflage=CAMOUFLAGE_DEMO, **SMALL)
    assert not any(flags(camo, label=0))  # backgrounds never
    assert abs(np.mean(flags(camo)) - CAMOUFLAGE_DEMO) < 0.15, np.mean(flags(camo))
    # the same scene draws up to the first camouflage decision: the first image's first regions agree
    first = [
        json.loads((r / "manifest.json").read_text())["items"]["train/train_0000"][:2]
        for r in (small_root, camo)
    ]
    assert [r["source"] for r in first[0]] == [r["source"] for r in first[1]]
    with pytest.raises(DatasetError, match="camouflage"):
        generate_embedded(tmp_path / "bad", camouflage=1.5, **SMALL)
    assert default_root(0.4).name == "embedded-camouflage0.4" and default_root().name == "embedded"

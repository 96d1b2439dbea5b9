"""Each dataset layout, built tiny on disk in its real format, read back with its id mapping."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import scipy.io
from data_helpers import id_grid, write_image, write_label

from ladseg.data import DATASETS, build_dataset
from ladseg.data.classes import ADE20K_CLASSES, COCO_STUFF_CLASSES, VOC_PALETTE, coco_stuff_table
from ladseg.errors import ConfigError, DatasetError


def make_voc(root: Path) -> Path:
    voc = root / "VOCdevkit" / "VOC2012"
    lists = voc / "ImageSets" / "Segmentation"
    lists.mkdir(parents=True)
    for i, name in enumerate(["2007_000032", "2007_000033", "2008_000001"]):
        write_image(voc / "JPEGImages" / f"{name}.jpg", seed=i, fmt="JPEG")
        write_label(  # drawn in VOC's colour map, as the release's files are
            voc / "SegmentationClass" / f"{name}.png",
            id_grid([0, 15, 20, 255]),
            palette=True,
            colours=VOC_PALETTE,
        )
        write_label(voc / "SegmentationClassAug" / f"{name}.png", id_grid([0, 1, 2, 255]))
    (lists / "train.txt").write_text("2007_000032\n2007_000033\n")
    (lists / "val.txt").write_text("2008_000001\n")
    (lists / "train_aug.txt").write_text("2007_000032\n2007_000033\n2008_000001\n")
    return voc


def test_voc_palette_png_indices_are_class_ids(tmp_path: Path) -> None:
    voc = make_voc(tmp_path)
    ds = build_dataset("voc", voc, "train")
    assert len(ds) == 2 and ds.num_classes == 21 and ds.palette.shape == (21, 3)
    item = ds[0]
    assert item["name"] == "2007_000032"
    assert item["image"].shape == (12, 16, 3) and item["image"].dtype == np.uint8
    assert item["mask"].dtype == np.int64
    assert sorted(np.unique(item["mask"]).tolist()) == [0, 15, 20, 255]
    aug = build_dataset("voc", voc, "train_aug")
    assert len(aug) == 3 and sorted(np.unique(aug[2]["mask"]).tolist()) == [0, 1, 2, 255]


def test_voc_label_with_another_colour_map_is_refused(tmp_path: Path) -> None:
    """A SegmentationClass PNG re-saved with its palette reordered would be read as other classes."""
    voc = make_voc(tmp_path)
    swapped = VOC_PALETTE.copy()
    swapped[[15, 20]] = swapped[
        [20, 15]
    ]  # person and tvmonitor's colours swapped: the picture still looks right
    bad = voc / "SegmentationClass" / "2007_000033.png"
    write_label(bad, id_grid([0, 15, 20, 255]), palette=True, colours=swapped)
    ds = build_dataset("voc", voc, "train")
    ds[0]  # the file in VOC's colours is read
    with pytest.raises(
        DatasetError, match=rf"label {bad} .* disagree with the dataset's VOC colour map: id 15 "
    ):
        ds[1]


def test_voc_missing_list_names_file_and_layout(tmp_path: Path) -> None:
    voc = make_voc(tmp_path)
    (voc / "ImageSets" / "Segmentation" / "val.txt").unlink()
    with pytest.raises(DatasetError, match="val.txt") as err:
        build_dataset("voc", voc, "val")
    assert "JPEGImages/<id>.jpg" in str(err.value)  # the expected layout is part of the message


def test_voc_listed_image_without_label(tmp_path: Path) -> None:
    voc = make_voc(tmp_path)
    (voc / "SegmentationClass" / "2008_000001.png").unlink()
    with pytest.raises(DatasetError, match="2008_000001.png"):
        build_dataset("voc", voc, "val")


def test_cityscapes_label_ids_to_train_ids(tmp_path: Path) -> None:
    root = tmp_path / "cityscapes"
    stem = "aachen_000000_000019"
    write_image(root / "leftImg8bit" / "train" / "aachen" / f"{stem}_leftImg8bit.png")
    # 7 road -> 0, 26 car -> 13, 33 bicycle -> 18, 0 unlabeled -> 255, 4 static -> 255
    write_label(
        root / "gtFine" / "train" / "aachen" / f"{stem}_gtFine_labelIds.png", id_grid([7, 26, 33, 0, 4])
    )
    ds = build_dataset("cityscapes", root, "train")
    assert ds.num_classes == 19 and ds[0]["name"] == f"aachen/{stem}"
    mask = ds[0]["mask"]
    assert np.array_equal(mask, id_grid([0, 13, 18, 255, 255]))


def test_cityscapes_image_without_label_is_an_error(tmp_path: Path) -> None:
    root = tmp_path / "cityscapes"
    write_image(root / "leftImg8bit" / "val" / "bonn" / "bonn_000000_000001_leftImg8bit.png")
    (root / "gtFine" / "val" / "bonn").mkdir(parents=True)
    with pytest.raises(DatasetError, match="gtFine_labelIds.png"):
        build_dataset("cityscapes", root, "val")


def test_ade20k_reduce_zero_label(tmp_path: Path) -> None:
    root = tmp_path / "ADEChallengeData2016"
    write_image(root / "images" / "validation" / "ADE_val_00000001.jpg", fmt="JPEG")
    write_label(root / "annotations" / "validation" / "ADE_val_00000001.png", id_grid([0, 1, 150]))
    ds = build_dataset("ade20k", root, "val")
    assert ds.classes == ADE20K_CLASSES
    assert np.array_equal(ds[0]["mask"], id_grid([255, 0, 149]))


def test_ade20k_missing_split_folder(tmp_path: Path) -> None:
    root = tmp_path / "ADEChallengeData2016"
    (root / "images" / "training").mkdir(parents=True)
    with pytest.raises(DatasetError, match="annotations") as err:
        build_dataset("ade20k", root, "train")
    assert "images/{training,validation}" in str(err.value)


def test_coco_stuff164k_raw_and_converted(tmp_path: Path) -> None:
    root = tmp_path / "coco_stuff164k"
    write_image(root / "images" / "val2017" / "000000000139.jpg", fmt="JPEG")
    # raw stuffthingmaps: 0 person -> 0, 12 (stop sign, after unused 11) -> 11, 181 wood -> 170, 255 ignore
    write_label(root / "annotations" / "val2017" / "000000000139.png", id_grid([0, 12, 181, 255]))
    raw = build_dataset("coco_stuff164k", root, "val")
    assert raw.labels == "raw" and raw.classes == COCO_STUFF_CLASSES
    assert np.array_equal(raw[0]["mask"], id_grid([0, 11, 170, 255]))
    write_label(root / "annotations" / "val2017" / "000000000139_labelTrainIds.png", id_grid([3, 170, 255]))
    conv = build_dataset("coco_stuff164k", root, "val")
    assert conv.labels == "labelTrainIds" and len(conv) == 1
    assert np.array_equal(conv[0]["mask"], id_grid([3, 170, 255]))


def test_coco_stuff_unused_thing_id_is_rejected(tmp_path: Path) -> None:
    root = tmp_path / "coco_stuff164k"
    write_image(root / "images" / "train2017" / "a.jpg", fmt="JPEG")
    write_label(root / "annotations" / "train2017" / "a.png", id_grid([0, 11]))  # 11 = unused COCO id 12
    ds = build_dataset("coco_stuff164k", root, "train", labels="raw")
    with pytest.raises(DatasetError, match=r"\[11\].*171 classes"):
        ds[0]


def test_coco_stuff_table_is_a_bijection_onto_171_ids() -> None:
    for one_based in (False, True):
        lut = coco_stuff_table(one_based)
        used = lut[(lut >= 0) & (lut != 255)]
        assert sorted(used.tolist()) == list(range(171))


def make_coco10k(root: Path, ids: np.ndarray) -> Path:
    root.mkdir(parents=True)
    write_image(root / "images" / "COCO_train2014_000000000077.jpg", fmt="JPEG")
    write_image(root / "images" / "COCO_train2014_000000000078.jpg", fmt="JPEG")
    (root / "annotations").mkdir()
    for name in ("COCO_train2014_000000000077", "COCO_train2014_000000000078"):
        scipy.io.savemat(root / "annotations" / f"{name}.mat", {"S": ids.astype(np.uint16), "names": ["x"]})
    (root / "imageLists").mkdir()
    (root / "imageLists" / "train.txt").write_text("COCO_train2014_000000000077\n")
    (root / "imageLists" / "test.txt").write_text("COCO_train2014_000000000078\n")
    return root


def test_coco_stuff10k_mat_labels(tmp_path: Path) -> None:
    # 1-based: 0 unlabeled -> 255, 1 person -> 0, 13 stop sign -> 11, 182 wood -> 170
    root = make_coco10k(tmp_path / "coco_stuff10k", id_grid([0, 1, 13, 182]))
    ds = build_dataset("coco_stuff10k", root, "train")
    assert np.array_equal(ds[0]["mask"], id_grid([255, 0, 11, 170]))
    assert build_dataset("coco_stuff10k", root, "val")[0]["name"] == "COCO_train2014_000000000078"


def test_coco_stuff10k_mat_without_key(tmp_path: Path) -> None:
    root = make_coco10k(tmp_path / "coco_stuff10k", id_grid([1]))
    scipy.io.savemat(root / "annotations" / "COCO_train2014_000000000077.mat", {"L": np.zeros((12, 16))})
    with pytest.raises(DatasetError, match="no key 'S'"):
        build_dataset("coco_stuff10k", root, "train")[0]


def test_camvid_void_is_ignore(tmp_path: Path) -> None:
    root = tmp_path / "CamVid"
    write_image(root / "test" / "0001TP_008550.png")
    write_label(root / "testannot" / "0001TP_008550.png", id_grid([0, 10, 11]))
    ds = build_dataset("camvid", root, "test")
    assert ds.num_classes == 11 and np.array_equal(ds[0]["mask"], id_grid([0, 10, 255]))


def make_folder(root: Path, n: int = 2, palette: bool = False) -> Path:
    (root).mkdir(parents=True, exist_ok=True)
    (root / "classes.txt").write_text("sky\nroad\ncar\n")
    if palette:
        (root / "palette.txt").write_text("1 2 3\n4 5 6\n7 8 9\n")
    for i in range(n):
        write_image(root / "images" / "train" / f"im{i}.png", seed=i)
        colours = np.array([[1, 2, 3], [4, 5, 6], [7, 8, 9]]) if palette else None  # as palette.txt declares
        write_label(
            root / "masks" / "train" / f"im{i}.png",
            id_grid([0, 1, 2, 255]),
            palette=i % 2 == 1,
            colours=colours,
        )
    return root


def test_folder_dataset(tmp_path: Path) -> None:
    root = make_folder(tmp_path / "mine", palette=True)
    ds = build_dataset("folder", root, "train")
    assert ds.classes == ("sky", "road", "car") and ds.palette.tolist() == [[1, 2, 3], [4, 5, 6], [7, 8, 9]]
    for i in range(2):
        assert np.array_equal(ds[i]["mask"], id_grid([0, 1, 2, 255]))


@pytest.mark.parametrize("suffix,fmt", [(".tif", "TIFF"), (".tiff", "TIFF"), (".webp", "WEBP")])
def test_folder_lists_tiff_and_webp_images(tmp_path: Path, suffix: str, fmt: str) -> None:
    root = make_folder(tmp_path / "mine", n=1)
    rgb = write_image(root / "images" / "train" / f"scan{suffix}", seed=7, fmt=fmt)
    write_label(root / "masks" / "train" / "scan.png", id_grid([2, 0, 1]))
    ds = build_dataset("folder", root, "train")
    assert len(ds) == 2  # im0.png and the new file: none skipped
    item = next(ds[i] for i in range(len(ds)) if ds.samples[i].image.suffix == suffix)
    assert np.array_equal(item["mask"], id_grid([2, 0, 1]))
    if fmt == "TIFF":  # lossless: the pixels read are the pixels written
        assert np.array_equal(np.asarray(item["image"]), rgb)


def test_folder_unknown_split_lists_found_splits(tmp_path: Path) -> None:
    root = make_folder(tmp_path / "mine")
    with pytest.raises(DatasetError, match=r"splits found: \['train'\]"):
        build_dataset("folder", root, "val")


def test_folder_missing_classes_txt(tmp_path: Path) -> None:
    root = make_folder(tmp_path / "mine")
    (root / "classes.txt").unlink()
    with pytest.raises(DatasetError, match="classes.txt") as err:
        build_dataset("folder", root, "train")
    assert "masks/<split>/<stem>.png" in str(err.value)


def test_empty_split(tmp_path: Path) -> None:
    root = make_folder(tmp_path / "mine", n=0)
    (root / "images" / "train").mkdir(parents=True)
    (root / "masks" / "train").mkdir(parents=True)
    with pytest.raises(DatasetError, match="empty"):
        build_dataset("folder", root, "train")


def test_missing_root(tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match="dataset root folder") as err:
        build_dataset("camvid", tmp_path / "nowhere", "train")
    assert "{train,val,test}annot/<name>.png" in str(err.value)


def test_truncated_image_names_the_file(tmp_path: Path) -> None:
    root = make_folder(tmp_path / "mine")
    path = root / "images" / "train" / "im1.png"
    path.write_bytes(path.read_bytes()[:60])
    ds = build_dataset("folder", root, "train")
    ds[0]  # the intact one still reads
    with pytest.raises(DatasetError, match="im1.png"):
        ds[1]


def test_mask_size_mismatch(tmp_path: Path) -> None:
    root = make_folder(tmp_path / "mine")
    write_label(root / "masks" / "train" / "im0.png", np.zeros((12, 15)))
    with pytest.raises(DatasetError, match=r"15x12.*16x12"):
        build_dataset("folder", root, "train")[0]


def test_out_of_range_ids_name_file_ids_and_class_count(tmp_path: Path) -> None:
    root = make_folder(tmp_path / "mine")
    write_label(root / "masks" / "train" / "im0.png", id_grid([0, 3, 7, 255]))
    with pytest.raises(DatasetError, match=r"im0.png holds ids \[3, 7\].*3 classes"):
        build_dataset("folder", root, "train")[0]


def test_colour_mask_is_rejected(tmp_path: Path) -> None:
    root = make_folder(tmp_path / "mine")
    write_image(root / "masks" / "train" / "im0.png")  # an RGB rendering instead of ids
    with pytest.raises(DatasetError, match="mode 'RGB'"):
        build_dataset("folder", root, "train")[0]


def test_registry_and_unknown_names(tmp_path: Path) -> None:
    expected = {
        "voc",
        "cityscapes",
        "ade20k",
        "coco_stuff164k",
        "coco_stuff10k",
        "camvid",
        "folder",
        "embedded",
    }
    assert expected <= set(DATASETS.names())
    with pytest.raises(ConfigError, match="valid names: ade20k, camvid"):
        build_dataset("vocc", tmp_path, "train")
    with pytest.raises(DatasetError, match="valid splits: train_aug, train, val"):
        build_dataset("voc", make_voc(tmp_path), "trainval")

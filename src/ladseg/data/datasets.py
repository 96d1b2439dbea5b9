"""The public benchmarks (mmsegmentation's ``data/`` tree) and the generic ``folder`` layout.

Each class docstring states its layout; ``root`` is the folder named at the top of it. Every
dataset accepts the split names ``train`` and ``val`` (mapped to the on-disk names).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import scipy.io

from ladseg.data import classes as C
from ladseg.data.base import DATASETS, Sample, SegDataset
from ladseg.errors import DatasetError


@DATASETS.register("voc")
class VOCDataset(SegDataset):
    """Pascal VOC 2012 with the SBD "aug" labels: 21 classes, 255 = ignore (the boundary band).

    Splits: ``train_aug`` (10,582 images, SBD labels), ``train`` (1,464), ``val`` (1,449).
    """

    classes = C.VOC_CLASSES
    palette = C.VOC_PALETTE
    # SegmentationClass PNGs are drawn in VOC's colour map; one re-saved with a reordered palette
    # (its indices renumbered) would be read as other classes, so its colours are checked
    declared_palette = C.VOC_PALETTE
    declared_palette_name = "VOC colour map"
    splits = {"train_aug": "train_aug", "train": "train", "val": "val"}
    layout = """VOCdevkit/VOC2012/                      <- root
  JPEGImages/<id>.jpg
  SegmentationClass/<id>.png              palette PNGs (index = class id), splits train / val
  SegmentationClassAug/<id>.png           SBD labels as 8-bit id PNGs, split train_aug
  ImageSets/Segmentation/train.txt, val.txt, train_aug.txt (or mmseg's aug.txt): one <id> a line"""

    def _scan(self) -> list[Sample]:
        aug = self.split == "train_aug"
        image_dir = self.require(self.root / "JPEGImages", "image folder")
        ann_dir = self.require(
            self.root / ("SegmentationClassAug" if aug else "SegmentationClass"), "label folder"
        )
        lists = self.root / "ImageSets" / "Segmentation"
        list_file = lists / f"{self.split}.txt"
        if aug and not list_file.exists() and (lists / "aug.txt").exists():
            list_file = lists / "aug.txt"
        return self.pairs_from_names(list_file, image_dir, ann_dir, ".jpg", ".png")


@DATASETS.register("cityscapes")
class CityscapesDataset(SegDataset):
    """Cityscapes fine annotations: 19 train ids, 255 = ignore.

    ``labels="labelIds"`` (default) reads ``*_gtFine_labelIds.png`` and maps label ids to train
    ids; ``labels="labelTrainIds"`` reads mmsegmentation's converted ``*_gtFine_labelTrainIds.png``.
    """

    classes = C.CITYSCAPES_CLASSES
    palette = C.CITYSCAPES_PALETTE
    splits = {"train": "train", "val": "val", "test": "test"}
    layout = """cityscapes/                             <- root
  leftImg8bit/{train,val,test}/<city>/<city>_<seq>_<frame>_leftImg8bit.png
  gtFine/{train,val,test}/<city>/<city>_<seq>_<frame>_gtFine_labelIds.png   (label ids 0..33)"""

    def __init__(
        self, root: str | Path, split: str, transform: Callable | None = None, labels: str = "labelIds"
    ) -> None:
        if labels not in ("labelIds", "labelTrainIds"):
            raise DatasetError(f"cityscapes: labels must be 'labelIds' or 'labelTrainIds', got {labels!r}")
        self.labels = labels
        super().__init__(root, split, transform)

    def make_label_table(self) -> np.ndarray:
        return C.cityscapes_table() if self.labels == "labelIds" else C.identity_table(19)

    def _scan(self) -> list[Sample]:
        return self.pair_by_stem(
            self.root / "leftImg8bit" / self.disk_split,
            self.root / "gtFine" / self.disk_split,
            mask_suffix=f"_gtFine_{self.labels}.png",
            image_suffix="_leftImg8bit",
            pattern="*/*.png",
        )


@DATASETS.register("ade20k")
class ADE20KDataset(SegDataset):
    """ADE20K SceneParsing: 150 classes; on disk 0 = "other" -> 255 and id i -> i - 1."""

    classes = C.ADE20K_CLASSES
    palette = C.ADE20K_PALETTE
    splits = {"train": "training", "val": "validation", "training": "training", "validation": "validation"}
    layout = """ade/ADEChallengeData2016/               <- root
  images/{training,validation}/ADE_*.jpg
  annotations/{training,validation}/ADE_*.png      8-bit ids, 0 = other, 1..150 = classes"""

    def make_label_table(self) -> np.ndarray:
        return C.ade20k_table()

    def _scan(self) -> list[Sample]:
        return self.pair_by_stem(
            self.root / "images" / self.disk_split, self.root / "annotations" / self.disk_split
        )


@DATASETS.register("coco_stuff164k")
class COCOStuff164KDataset(SegDataset):
    """COCO-Stuff 164K: 171 contiguous classes (80 things + 91 stuff), 255 = ignore.

    ``labels="labelTrainIds"``: mmsegmentation's converted ``<stem>_labelTrainIds.png`` (0..170);
    ``labels="raw"``: the official ``stuffthingmaps`` ``<stem>.png`` (0..181 = category id - 1,
    255 unlabeled), mapped to 171 ids here; ``labels="auto"`` (default) uses the converted files
    when the label folder holds any, otherwise the raw ones.
    """

    classes = C.COCO_STUFF_CLASSES
    palette = C.COCO_STUFF_PALETTE
    splits = {"train": "train2017", "val": "val2017", "train2017": "train2017", "val2017": "val2017"}
    layout = """coco_stuff164k/                         <- root
  images/{train2017,val2017}/<stem>.jpg
  annotations/{train2017,val2017}/<stem>_labelTrainIds.png   (0..170, 255 ignore)
      or annotations/{train2017,val2017}/<stem>.png          (official stuffthingmaps, 0..181)"""

    def __init__(
        self, root: str | Path, split: str, transform: Callable | None = None, labels: str = "auto"
    ) -> None:
        if labels not in ("auto", "labelTrainIds", "raw"):
            raise DatasetError(
                f"coco_stuff164k: labels must be 'auto', 'labelTrainIds' or 'raw', got {labels!r}"
            )
        self.labels = labels
        super().__init__(root, split, transform)

    def _scan(self) -> list[Sample]:
        ann_dir = self.require(self.root / "annotations" / self.disk_split, "label folder")
        if self.labels == "auto":
            has_converted = next(ann_dir.glob("*_labelTrainIds.png"), None) is not None
            self.labels = "labelTrainIds" if has_converted else "raw"
        self.label_table = C.identity_table(171) if self.labels == "labelTrainIds" else C.coco_stuff_table()
        suffix = "_labelTrainIds.png" if self.labels == "labelTrainIds" else ".png"
        return self.pair_by_stem(self.root / "images" / self.disk_split, ann_dir, mask_suffix=suffix)


@DATASETS.register("coco_stuff10k")
class COCOStuff10KDataset(SegDataset):
    """COCO-Stuff 10K (v1.1): ``.mat`` labels with key ``S`` (1..182 = category id, 0 unlabeled),
    mapped to the same 171 contiguous ids as COCO-Stuff 164K; 9,000 train / 1,000 test (= val)."""

    classes = C.COCO_STUFF_CLASSES
    palette = C.COCO_STUFF_PALETTE
    splits = {"train": "train", "val": "test", "test": "test"}
    layout = """coco_stuff10k/                          <- root
  images/<name>.jpg
  annotations/<name>.mat                  key 'S': H x W ids, 1..182, 0 = unlabeled
  imageLists/train.txt, test.txt          one <name> a line"""

    def make_label_table(self) -> np.ndarray:
        return C.coco_stuff_table(one_based=True)

    def _scan(self) -> list[Sample]:
        image_dir = self.require(self.root / "images", "image folder")
        ann_dir = self.require(self.root / "annotations", "label folder")
        list_file = self.root / "imageLists" / f"{self.disk_split}.txt"
        return self.pairs_from_names(list_file, image_dir, ann_dir, ".jpg", ".mat")

    def read_label(self, path: Path) -> np.ndarray:
        try:
            content = scipy.io.loadmat(str(path))
        except (OSError, ValueError, NotImplementedError, TypeError) as exc:
            raise DatasetError(f"cannot read label {path} (expected a MATLAB v5 .mat file): {exc}") from exc
        if "S" not in content:
            keys = sorted(k for k in content if not k.startswith("__"))
            raise DatasetError(f"label {path} has no key 'S' (found {keys})")
        return np.asarray(content["S"]).astype(np.int64)


@DATASETS.register("camvid")
class CamVidDataset(SegDataset):
    """CamVid in SegNet's 11-class layout (367 train / 101 val / 233 test): id 11 = void -> 255.

    The 32-class colour-coded release (``*_L.png`` RGB labels) is not read; convert it first.
    """

    classes = C.CAMVID_CLASSES
    palette = C.CAMVID_PALETTE
    splits = {"train": "train", "val": "val", "test": "test"}
    layout = """CamVid/                                 <- root
  {train,val,test}/<name>.png
  {train,val,test}annot/<name>.png        8-bit ids 0..10, 11 = void
  or {train,val,test}.txt                 'image label' lines (CIRKD / LAD code lists), paths under root"""

    def make_label_table(self) -> np.ndarray:
        return C.identity_table(11, void_ids=(11,))

    def _scan(self) -> list[Sample]:
        image_dir = self.root / self.disk_split
        list_file = self.root / f"{self.disk_split}.txt"
        if not image_dir.is_dir() and list_file.is_file():
            return self.pairs_from_list(list_file)
        return self.pair_by_stem(image_dir, self.root / f"{self.disk_split}annot")


@DATASETS.register("folder")
class FolderDataset(SegDataset):
    """A generic dataset: any split folder, masks hold class ids directly (255 = ignore).

    ``classes.txt`` names the classes, one a line, in id order; the optional ``palette.txt``
    gives one ``R G B`` line per class (otherwise the VOC colour map is used). Masks saved as palette
    images are read as their indices; with a ``palette.txt``, a mask whose palette gives an id another
    colour is refused (a tool reordered it: its ids would mean other classes).
    """

    layout = """<root>/
  classes.txt                             one class name a line (line i = id i)
  palette.txt                             optional: one 'R G B' line per class
  images/<split>/<stem>.{jpg,png}
  masks/<split>/<stem>.png                single-channel ids 0..K-1, 255 = ignore"""

    def __init__(self, root: str | Path, split: str, transform: Callable | None = None) -> None:
        self.root = Path(root).expanduser()
        if not self.root.is_dir():  # say the root is missing, not merely its classes.txt
            self.missing(self.root, "dataset root folder")
        self.classes, self.palette = read_class_files(self.root, self.layout)
        if (self.root / "palette.txt").is_file():  # declared: palette masks must give their ids these colours
            self.declared_palette = self.palette
        super().__init__(root, split, transform)

    def _scan(self) -> list[Sample]:
        image_dir = self.root / "images" / self.split
        if not image_dir.is_dir():
            found = sorted(p.name for p in (self.root / "images").glob("*") if p.is_dir())
            self.missing(image_dir, f"image folder of split {self.split!r} (splits found: {found or 'none'})")
        return self.pair_by_stem(image_dir, self.root / "masks" / self.split)


def read_class_files(root: Path, layout: str) -> tuple[tuple[str, ...], np.ndarray]:
    """``classes.txt`` (required) and ``palette.txt`` (optional) of a folder dataset."""
    path = root / "classes.txt"
    if not path.is_file():
        raise DatasetError(f"missing class list: {path}\nexpected layout under {root}:\n{layout}")
    names = tuple(line.strip() for line in path.read_text().splitlines() if line.strip())
    if not names or len(names) > 255:
        raise DatasetError(f"{path} lists {len(names)} classes; expected 1..255 (255 is the ignore id)")
    pal_path = root / "palette.txt"
    if not pal_path.is_file():
        return names, C.bit_palette(len(names))
    try:
        rows = [[int(v) for v in line.split()] for line in pal_path.read_text().splitlines() if line.strip()]
        palette = np.array(rows, dtype=np.int64)
    except ValueError as exc:
        raise DatasetError(f"{pal_path}: expected one 'R G B' line of integers per class ({exc})") from exc
    if palette.shape != (len(names), 3) or palette.min() < 0 or palette.max() > 255:
        raise DatasetError(
            f"{pal_path}: expected {len(names)} lines of 'R G B' in 0..255, got shape {palette.shape}"
        )
    return names, palette.astype(np.uint8)

"""Class names, palettes and on-disk id -> train id tables of the supported datasets.

A *label table* is an int64 lookup array ``lut`` with ``train_id = lut[raw_id]``: a value in
``[0, K)`` is a class, 255 is ignore and -1 marks a raw id that must never occur (the dataset
reader reports it instead of silently dropping it). Raw ids beyond the table are invalid too.
"""

from __future__ import annotations

import numpy as np

from ladseg.labels import IGNORE_INDEX

IGNORE_COLOR = (224, 224, 192)  # VOC's colour for the 255 band
INVALID = -1


def bit_palette(num_classes: int) -> np.ndarray:
    """The Pascal VOC colour map (bits of the class id spread over R, G, B): distinct up to 256."""
    palette = np.zeros((num_classes, 3), dtype=np.uint8)
    for k in range(num_classes):
        c, r, g, b = k, 0, 0, 0
        for shift in range(7, -1, -1):
            r |= ((c >> 0) & 1) << shift
            g |= ((c >> 1) & 1) << shift
            b |= ((c >> 2) & 1) << shift
            c >>= 3
        palette[k] = (r, g, b)
    return palette


def identity_table(num_classes: int, void_ids: tuple[int, ...] = ()) -> np.ndarray:
    """Raw ids already are train ids; 255 (and ``void_ids``) mean ignore; anything else is invalid."""
    lut = np.full(256, INVALID, dtype=np.int64)
    lut[:num_classes] = np.arange(num_classes)
    lut[IGNORE_INDEX] = IGNORE_INDEX
    for v in void_ids:
        lut[v] = IGNORE_INDEX
    return lut


# --- Pascal VOC 2012 ---------------------------------------------------------------------------
VOC_CLASSES = (
    "background", "aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat", "chair",
    "cow", "diningtable", "dog", "horse", "motorbike", "person", "pottedplant", "sheep", "sofa",
    "train", "tvmonitor",
)  # fmt: skip
VOC_PALETTE = bit_palette(21)

# --- Cityscapes (labelIds -> trainIds, as cityscapesScripts' labels.py) ------------------------
CITYSCAPES_CLASSES = (
    "road", "sidewalk", "building", "wall", "fence", "pole", "traffic light", "traffic sign",
    "vegetation", "terrain", "sky", "person", "rider", "car", "truck", "bus", "train", "motorcycle",
    "bicycle",
)  # fmt: skip
CITYSCAPES_PALETTE = np.array(
    [[128, 64, 128], [244, 35, 232], [70, 70, 70], [102, 102, 156], [190, 153, 153], [153, 153, 153],
     [250, 170, 30], [220, 220, 0], [107, 142, 35], [152, 251, 152], [70, 130, 180], [220, 20, 60],
     [255, 0, 0], [0, 0, 142], [0, 0, 70], [0, 60, 100], [0, 80, 100], [0, 0, 230], [119, 11, 32]],
    dtype=np.uint8,
)  # fmt: skip
_CITYSCAPES_TRAIN_LABEL_IDS = (7, 8, 11, 12, 13, 17, 19, 20, 21, 22, 23, 24, 25, 26, 27, 28, 31, 32, 33)


def cityscapes_table() -> np.ndarray:
    """labelIds 0..33 (and 255) -> trainIds; ids that are not evaluated become 255."""
    lut = np.full(256, INVALID, dtype=np.int64)
    lut[:34] = IGNORE_INDEX
    lut[IGNORE_INDEX] = IGNORE_INDEX
    for train_id, label_id in enumerate(_CITYSCAPES_TRAIN_LABEL_IDS):
        lut[label_id] = train_id
    return lut


# --- ADE20K SceneParsing (150 classes; on disk 0 = other, i = class i - 1) ----------------------
ADE20K_CLASSES = (
    "wall", "building", "sky", "floor", "tree", "ceiling", "road", "bed", "windowpane", "grass",
    "cabinet", "sidewalk", "person", "earth", "door", "table", "mountain", "plant", "curtain",
    "chair", "car", "water", "painting", "sofa", "shelf", "house", "sea", "mirror", "rug", "field",
    "armchair", "seat", "fence", "desk", "rock", "wardrobe", "lamp", "bathtub", "railing", "cushion",
    "base", "box", "column", "signboard", "chest of drawers", "counter", "sand", "sink",
    "skyscraper", "fireplace", "refrigerator", "grandstand", "path", "stairs", "runway", "case",
    "pool table", "pillow", "screen door", "stairway", "river", "bridge", "bookcase", "blind",
    "coffee table", "toilet", "flower", "book", "hill", "bench", "countertop", "stove", "palm",
    "kitchen island", "computer", "swivel chair", "boat", "bar", "arcade machine", "hovel", "bus",
    "towel", "light", "truck", "tower", "chandelier", "awning", "streetlight", "booth",
    "television receiver", "airplane", "dirt track", "apparel", "pole", "land", "bannister",
    "escalator", "ottoman", "bottle", "buffet", "poster", "stage", "van", "ship", "fountain",
    "conveyer belt", "canopy", "washer", "plaything", "swimming pool", "stool", "barrel", "basket",
    "waterfall", "tent", "bag", "minibike", "cradle", "oven", "ball", "food", "step", "tank",
    "trade name", "microwave", "pot", "animal", "bicycle", "lake", "dishwasher", "screen",
    "blanket", "sculpture", "hood", "sconce", "vase", "traffic light", "tray", "ashcan", "fan",
    "pier", "crt screen", "plate", "monitor", "bulletin board", "shower", "radiator", "glass",
    "clock", "flag",
)  # fmt: skip
ADE20K_PALETTE = bit_palette(150)


def ade20k_table() -> np.ndarray:
    """ADE20K's ``reduce_zero_label``: 0 (other) -> 255, i -> i - 1 for i in 1..150."""
    lut = np.full(256, INVALID, dtype=np.int64)
    lut[0] = IGNORE_INDEX
    lut[1:151] = np.arange(150)
    lut[IGNORE_INDEX] = IGNORE_INDEX
    return lut


# --- COCO-Stuff (182 ids of which 171 are used; 80 things then 91 stuff) ------------------------
COCO_STUFF_CLASSES = (
    "person", "bicycle", "car", "motorcycle", "airplane", "bus", "train", "truck", "boat",
    "traffic light", "fire hydrant", "stop sign", "parking meter", "bench", "bird", "cat", "dog",
    "horse", "sheep", "cow", "elephant", "bear", "zebra", "giraffe", "backpack", "umbrella",
    "handbag", "tie", "suitcase", "frisbee", "skis", "snowboard", "sports ball", "kite",
    "baseball bat", "baseball glove", "skateboard", "surfboard", "tennis racket", "bottle",
    "wine glass", "cup", "fork", "knife", "spoon", "bowl", "banana", "apple", "sandwich", "orange",
    "broccoli", "carrot", "hot dog", "pizza", "donut", "cake", "chair", "couch", "potted plant",
    "bed", "dining table", "toilet", "tv", "laptop", "mouse", "remote", "keyboard", "cell phone",
    "microwave", "oven", "toaster", "sink", "refrigerator", "book", "clock", "vase", "scissors",
    "teddy bear", "hair drier", "toothbrush",
    "banner", "blanket", "branch", "bridge", "building-other", "bush", "cabinet", "cage",
    "cardboard", "carpet", "ceiling-other", "ceiling-tile", "cloth", "clothes", "clouds", "counter",
    "cupboard", "curtain", "desk-stuff", "dirt", "door-stuff", "fence", "floor-marble",
    "floor-other", "floor-stone", "floor-tile", "floor-wood", "flower", "fog", "food-other",
    "fruit", "furniture-other", "grass", "gravel", "ground-other", "hill", "house", "leaves",
    "light", "mat", "metal", "mirror-stuff", "moss", "mountain", "mud", "napkin", "net", "paper",
    "pavement", "pillow", "plant-other", "plastic", "platform", "playingfield", "railing",
    "railroad", "river", "road", "rock", "roof", "rug", "salad", "sand", "sea", "shelf",
    "sky-other", "skyscraper", "snow", "solid-other", "stairs", "stone", "straw",
    "structural-other", "table", "tent", "textile-other", "towel", "tree", "vegetable",
    "wall-brick", "wall-concrete", "wall-other", "wall-panel", "wall-stone", "wall-tile",
    "wall-wood", "water-other", "waterdrops", "window-blind", "window-other", "wood",
)  # fmt: skip
COCO_STUFF_PALETTE = bit_palette(171)
# 0-based ids (COCO category id - 1) of the 11 thing categories COCO never annotated.
_COCO_UNUSED_IDS = (11, 25, 28, 29, 44, 65, 67, 68, 70, 82, 90)


def coco_stuff_table(one_based: bool = False) -> np.ndarray:
    """COCO-Stuff raw ids -> 171 contiguous train ids.

    ``one_based=False``: the 164K ``stuffthingmaps`` PNGs (0..181 = category id - 1, 255 unlabeled).
    ``one_based=True``: the 10K ``.mat`` files (1..182 = category id, 0 unlabeled).
    The 11 unused thing ids are invalid.
    """
    used = [i for i in range(182) if i not in _COCO_UNUSED_IDS]
    lut = np.full(256, INVALID, dtype=np.int64)
    offset = 1 if one_based else 0
    lut[np.array(used) + offset] = np.arange(len(used))
    lut[0 if one_based else IGNORE_INDEX] = IGNORE_INDEX
    if one_based:
        lut[IGNORE_INDEX] = IGNORE_INDEX
    return lut


# --- CamVid, SegNet's 11-class version (id 11 = void) ------------------------------------------
CAMVID_CLASSES = (
    "sky", "building", "pole", "road", "sidewalk", "tree", "sign", "fence", "car", "pedestrian",
    "bicyclist",
)  # fmt: skip
CAMVID_PALETTE = np.array(
    [[128, 128, 128], [128, 0, 0], [192, 192, 128], [128, 64, 128], [60, 40, 222], [128, 128, 0],
     [192, 128, 128], [64, 64, 128], [64, 0, 128], [64, 64, 0], [0, 128, 192]],
    dtype=np.uint8,
)  # fmt: skip

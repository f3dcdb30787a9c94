"""Class lists and fold splits of PASCAL-5i and COCO-20i (METHOD.md, "Evaluation protocol")."""

from __future__ import annotations

PASCAL_CLASSES: tuple[str, ...] = (
    "aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat", "chair", "cow",
    "diningtable", "dog", "horse", "motorbike", "person", "pottedplant", "sheep", "sofa", "train",
    "tvmonitor",
)  # fmt: skip

COCO_CLASSES: tuple[str, ...] = (
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
)  # fmt: skip

DATASETS = ("pascal5i", "coco20i")
FOLDS = (0, 1, 2, 3)
IGNORE = 255
"""The label value of pixels that are not scored (PASCAL's object boundaries)."""


def check_fold(dataset: str, fold: object) -> int:
    """``fold`` if ``dataset`` is known and ``fold`` is 0-3, else `ValueError` naming both."""
    if dataset not in DATASETS:
        raise ValueError(f"unknown dataset {dataset!r}; choose one of {list(DATASETS)}")
    if isinstance(fold, bool) or not isinstance(fold, int) or fold not in FOLDS:
        raise ValueError(f"fold must be 0, 1, 2 or 3, got {fold!r}")
    return fold


def novel_classes(dataset: str, fold: int, num_classes: int | None = None) -> list[int]:
    """1-based label ids of a fold's novel (test) classes.

    PASCAL-5i: fold i holds classes 5i+1 .. 5i+5. COCO-20i: the interleaved split, fold i holds
    classes i+1, i+5, i+9, ... (20 classes). ``num_classes`` overrides the class count (for
    datasets laid out like these with another number of classes; it must be a multiple of 4).
    """
    check_fold(dataset, fold)
    total = num_classes or (len(PASCAL_CLASSES) if dataset == "pascal5i" else len(COCO_CLASSES))
    if total % 4:
        raise ValueError(f"{total} classes do not split into 4 folds")
    per_fold = total // 4
    if dataset == "pascal5i":
        return list(range(per_fold * fold + 1, per_fold * (fold + 1) + 1))
    return list(range(fold + 1, total + 1, 4))


def base_classes(dataset: str, fold: int, num_classes: int | None = None) -> list[int]:
    """1-based label ids of a fold's base (training) classes: all classes but the novel ones."""
    novel = set(novel_classes(dataset, fold, num_classes))
    total = num_classes or (len(PASCAL_CLASSES) if dataset == "pascal5i" else len(COCO_CLASSES))
    return [c for c in range(1, total + 1) if c not in novel]

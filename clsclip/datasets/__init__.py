"""Segmentation datasets for training and evaluation (PASCAL-5i, COCO-20i, synthetic).

Inference never imports this package.
"""

from clsclip.datasets.coco import CocoFolder
from clsclip.datasets.folds import (
    COCO_CLASSES,
    IGNORE,
    PASCAL_CLASSES,
    base_classes,
    check_fold,
    novel_classes,
)
from clsclip.datasets.voc import (
    FoldDataset,
    VocFolder,
    augment,
    binary_target,
    open_folder,
)

__all__ = [
    "COCO_CLASSES",
    "CocoFolder",
    "IGNORE",
    "PASCAL_CLASSES",
    "FoldDataset",
    "VocFolder",
    "augment",
    "base_classes",
    "check_fold",
    "binary_target",
    "novel_classes",
    "open_folder",
]

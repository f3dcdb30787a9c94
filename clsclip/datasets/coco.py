"""COCO-20i straight from COCO 2014's instance annotations, read through pycocotools."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from clsclip.datasets.folds import COCO_CLASSES

INSTALL_HINT = 'reading COCO annotations needs pycocotools: pip install "clsclip[train]"'
IGNORE = 255


def _coco_api(annotation_file: Path) -> Any:
    try:
        from pycocotools.coco import COCO
    except ImportError as e:
        raise ImportError(INSTALL_HINT) from e
    return COCO(str(annotation_file))


@dataclass
class CocoFolder:
    """A COCO 2014 root: ``{train2014,val2014}/*.jpg`` and
    ``annotations/instances_{train2014,val2014}.json``.

    Splits are ``"train"`` and ``"val"``. Class-index masks are rendered from the instance
    polygons / RLEs: label k + 1 for the k-th category in id order (COCO's 80 classes, as
    `COCO_CLASSES`), 255 where an annotation is a crowd region. Same interface as `VocFolder`.
    """

    root: Path
    _apis: dict[str, Any] = field(default_factory=dict, repr=False)
    _image_split: dict[str, str] = field(default_factory=dict, repr=False)

    @classmethod
    def open(cls, root: str | os.PathLike[str]) -> CocoFolder:
        path = Path(root)
        missing = [
            name
            for name in (
                "annotations/instances_train2014.json",
                "annotations/instances_val2014.json",
            )
            if not (path / name).is_file()
        ]
        if len(missing) == 2:
            raise FileNotFoundError(f"{path} is not a COCO 2014 root: missing {missing}")
        return cls(root=path)

    @staticmethod
    def is_coco_root(root: str | os.PathLike[str]) -> bool:
        return any((Path(root) / "annotations").glob("instances_*2014.json"))

    def _api(self, split: str) -> Any:
        if split not in ("train", "val"):
            raise FileNotFoundError(f"COCO 2014 has the splits 'train' and 'val', not {split!r}")
        if split not in self._apis:
            path = self.root / "annotations" / f"instances_{split}2014.json"
            if not path.is_file():
                raise FileNotFoundError(f"no annotation file {path}")
            self._apis[split] = _coco_api(path)
        return self._apis[split]

    def _labels(self, api: Any) -> dict[int, int]:
        return {cat: k + 1 for k, cat in enumerate(sorted(api.getCatIds()))}

    def ids(self, split: str) -> list[str]:
        api = self._api(split)
        ids = [str(i) for i in sorted(api.getImgIds())]
        for image_id in ids:
            self._image_split[image_id] = split
        return ids

    def class_names(self, dataset: str) -> list[str]:
        return list(COCO_CLASSES)

    def image_path(self, image_id: str) -> Path:
        image_id = _numeric(image_id)
        split = self._split_of(image_id)
        info = self._api(split).loadImgs(int(image_id))[0]
        path = self.root / f"{split}2014" / info["file_name"]
        if not path.is_file():
            raise FileNotFoundError(f"no image file {path}")
        return path

    def mask(self, image_id: str) -> np.ndarray:
        image_id = _numeric(image_id)
        split = self._split_of(image_id)
        api = self._api(split)
        labels = self._labels(api)
        info = api.loadImgs(int(image_id))[0]
        mask = np.zeros((info["height"], info["width"]), dtype=np.uint8)
        crowd = np.zeros_like(mask, dtype=bool)
        for ann in api.loadAnns(api.getAnnIds(imgIds=int(image_id), iscrowd=None)):
            region = api.annToMask(ann).astype(bool)
            if ann.get("iscrowd", 0):
                crowd |= region
            else:
                mask[region] = labels[ann["category_id"]]
        mask[crowd] = IGNORE
        return mask

    def index(self, split: str) -> dict[str, dict[int, int]]:
        """Pixel counts per label from the annotations' areas (no rendering)."""
        api = self._api(split)
        labels = self._labels(api)
        found: dict[str, dict[int, int]] = {}
        for image_id in self.ids(split):
            counts: dict[int, int] = {}
            for ann in api.loadAnns(api.getAnnIds(imgIds=int(image_id), iscrowd=False)):
                label = labels[ann["category_id"]]
                counts[label] = counts.get(label, 0) + int(ann["area"])
            found[image_id] = counts
        return found

    def _split_of(self, image_id: str) -> str:
        if image_id not in self._image_split:
            for split in ("train", "val"):
                if (self.root / "annotations" / f"instances_{split}2014.json").is_file():
                    self.ids(split)
        if image_id not in self._image_split:
            raise FileNotFoundError(f"image id {image_id!r} is in no COCO 2014 annotation file")
        return self._image_split[image_id]


def _numeric(image_id: str) -> str:
    """COCO's numeric id of ``"COCO_val2014_000000429717"`` (the standard lists' form), or the
    id as it is."""
    if image_id.startswith("COCO_"):
        return str(int(image_id.rsplit("_", 1)[1]))
    return image_id

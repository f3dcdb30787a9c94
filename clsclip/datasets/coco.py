"""COCO-20i straight from COCO 2014's instance annotations, read through pycocotools."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from clsclip.datasets.folds import COCO_CLASSES
from clsclip.optional import require


def coco_api(annotation_file: Path) -> Any:
    """pycocotools' ``COCO`` index of an instance annotation file."""
    coco = require("pycocotools.coco", "train", purpose="reading COCO annotations")
    return coco.COCO(str(annotation_file))


def category_labels(api: Any) -> dict[int, int]:
    """COCO category id -> class label k + 1, for the k-th category in id order."""
    return {cat: k + 1 for k, cat in enumerate(sorted(api.getCatIds()))}


def render_class_mask(api: Any, image_id: int, labels: dict[int, int]) -> np.ndarray:
    """uint8 ``H x W`` class-index mask of one image: 0 background, the class label of every
    instance annotation painted in file order, crowd regions included (the standard COCO-20i
    protocol has no ignore value: a crowd of people is people)."""
    info = api.loadImgs(int(image_id))[0]
    mask = np.zeros((info["height"], info["width"]), dtype=np.uint8)
    for annotation in api.loadAnns(api.getAnnIds(imgIds=int(image_id), iscrowd=None)):
        mask[api.annToMask(annotation).astype(bool)] = labels[annotation["category_id"]]
    return mask


@dataclass
class CocoFolder:
    """A COCO 2014 root: ``{train2014,val2014}/*.jpg`` and
    ``annotations/instances_{train2014,val2014}.json``.

    Splits are ``"train"`` and ``"val"``. Class-index masks are rendered from the instance
    polygons / RLEs by `render_class_mask`, exactly as ``clsclip data coco`` writes them: label
    k + 1 for the k-th category in id order (COCO's 80 classes, as `COCO_CLASSES`), crowd
    regions with their class. Same interface as `VocFolder`.
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
            self._apis[split] = coco_api(path)
        return self._apis[split]

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
        return render_class_mask(api, int(image_id), category_labels(api))

    def index(self, split: str) -> dict[str, dict[int, int]]:
        """Pixel counts per label from the annotations' areas, crowds included (no rendering)."""
        api = self._api(split)
        labels = category_labels(api)
        found: dict[str, dict[int, int]] = {}
        for image_id in self.ids(split):
            counts: dict[int, int] = {}
            for ann in api.loadAnns(api.getAnnIds(imgIds=int(image_id), iscrowd=None)):
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

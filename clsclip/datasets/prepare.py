"""Turning the public downloads into the layout ``clsclip train`` / ``eval`` read (VOC layout).

- PASCAL-5i: VOC2012 plus SBD (Hariharan et al.'s "benchmark_RELEASE"): SBD's ``cls/*.mat``
  class masks and VOC's own ``SegmentationClass`` PNGs become ``SegmentationClassAug/{id}.png``,
  and ``ImageSets/Segmentation/trainaug.txt`` lists VOC train plus SBD train and val, less VOC
  val (10,582 images with the full downloads), as in DeepLab's SegmentationClassAug.
- COCO-20i: COCO 2014's instance annotations rendered into one class-index PNG per image
  (label k + 1 for the k-th category in id order, crowd regions with their class: the standard
  protocol has no ignore label on COCO), images linked as ``JPEGImages/COCO_{split}2014_{id}``,
  id lists ``train`` and ``val``, and ``classes.txt``.
- `check`: which images and masks of the standard lists are missing.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

import numpy as np
from PIL import Image

from clsclip.datasets.coco import category_labels, coco_api, render_class_mask
from clsclip.datasets.folds import COCO_CLASSES
from clsclip.datasets.standard import coco_image_id, standard_pairs
from clsclip.datasets.voc import read_label_image
from clsclip.optional import require
from clsclip.storage.files import write_atomic

_T = TypeVar("_T")


def _progress(items: Iterable[_T], total: int, desc: str, show: bool) -> Iterator[_T]:
    from tqdm import tqdm

    yield from tqdm(items, total=total, desc=desc, unit="image", disable=not show)


def _save_png(array: np.ndarray, path: Path) -> None:
    image = Image.fromarray(array.astype(np.uint8), mode="L")
    write_atomic(path, lambda tmp: image.save(tmp, format="PNG"))


def _ids(path: Path) -> list[str]:
    if not path.is_file():
        raise FileNotFoundError(f"id list not found: {path}")
    return [line.split()[0] for line in path.read_text().splitlines() if line.strip()]


def read_sbd_mask(path: Path) -> np.ndarray:
    """The class mask (uint8 ``H x W``) of an SBD ``cls/{id}.mat`` file (``GTcls.Segmentation``)."""
    scipy_io = require("scipy.io", "train", purpose="reading SBD .mat files")
    data = scipy_io.loadmat(str(path), squeeze_me=True, struct_as_record=False)
    if "GTcls" not in data:
        raise ValueError(f"{path} is not an SBD class file: no GTcls")
    return np.asarray(data["GTcls"].Segmentation, dtype=np.uint8)


def prepare_voc(voc: Path, sbd: Path, *, progress: bool = True) -> Path:
    """Write ``SegmentationClassAug`` and ``trainaug.txt`` into the VOC2012 folder ``voc``
    (``JPEGImages``, ``SegmentationClass``, ``ImageSets/Segmentation/{train,val}.txt``) from
    the SBD folder ``sbd`` (``cls/*.mat``, ``train.txt``, ``val.txt``; the ``dataset``
    folder of SBD's download). Returns the ``SegmentationClassAug`` folder."""
    lists = voc / "ImageSets" / "Segmentation"
    voc_train, voc_val = _ids(lists / "train.txt"), _ids(lists / "val.txt")
    sbd_ids = _ids(sbd / "train.txt") + _ids(sbd / "val.txt")
    out = voc / "SegmentationClassAug"
    out.mkdir(exist_ok=True)
    own = {p.stem for p in (voc / "SegmentationClass").glob("*.png")}
    wanted = list(dict.fromkeys(voc_train + voc_val + sbd_ids))
    for image_id in _progress(wanted, len(wanted), "SegmentationClassAug", progress):
        target = out / f"{image_id}.png"
        if target.is_file():
            continue
        if image_id in own:  # VOC's own masks (palette indices, 255 on boundaries) win
            _save_png(read_label_image(voc / "SegmentationClass" / f"{image_id}.png"), target)
        else:
            _save_png(read_sbd_mask(sbd / "cls" / f"{image_id}.mat"), target)
    val = set(voc_val)
    _write_list(
        lists / "trainaug.txt", [i for i in dict.fromkeys(voc_train + sbd_ids) if i not in val]
    )
    return out


def _write_list(path: Path, ids: list[str]) -> None:
    text = "\n".join(ids) + "\n"
    write_atomic(path, lambda tmp: tmp.write_text(text))


def prepare_coco(coco: Path, out: Path, *, progress: bool = True) -> Path:
    """Render COCO 2014 (``{train,val}2014/``, ``annotations/instances_{train,val}2014.json``)
    into a VOC-layout folder ``out``. Returns ``out``."""
    (out / "JPEGImages").mkdir(parents=True, exist_ok=True)
    (out / "SegmentationClassAug").mkdir(exist_ok=True)
    (out / "ImageSets" / "Segmentation").mkdir(parents=True, exist_ok=True)
    _write_list(out / "classes.txt", list(COCO_CLASSES))
    for split in ("train", "val"):
        annotations = coco / "annotations" / f"instances_{split}2014.json"
        if not annotations.is_file():
            continue
        api = coco_api(annotations)
        labels = category_labels(api)
        ids = sorted(api.getImgIds())
        stems = []
        for image_id in _progress(ids, len(ids), f"COCO {split}2014", progress):
            info = api.loadImgs(image_id)[0]
            stem = coco_image_id(image_id, f"{split}2014")
            stems.append(stem)
            link = out / "JPEGImages" / f"{stem}.jpg"
            if not link.exists():
                os.symlink((coco / f"{split}2014" / info["file_name"]).resolve(), link)
            target = out / "SegmentationClassAug" / f"{stem}.png"
            if not target.is_file():
                _save_png(render_class_mask(api, image_id, labels), target)
        _write_list(out / "ImageSets" / "Segmentation" / f"{split}.txt", stems)
    return out


@dataclass(frozen=True)
class CheckReport:
    """What a data root lacks for the standard lists of a dataset."""

    dataset: str
    images: int
    missing_images: list[str]
    missing_masks: list[str]

    @property
    def ok(self) -> bool:
        return not self.missing_images and not self.missing_masks

    def describe(self) -> str:
        lines = [f"{self.dataset}: {self.images} images in the standard lists"]
        for what, ids in (("images", self.missing_images), ("masks", self.missing_masks)):
            if ids:
                lines.append(f"missing {what}: {len(ids)}, e.g. {ids[:5]}")
        lines.append("ok: every listed image and mask is there" if self.ok else "incomplete")
        return "\n".join(lines)


def check(dataset: str, root: Path) -> CheckReport:
    """Look for every image and mask of the standard lists (val and trn, all folds) in a
    VOC-layout ``root``."""
    ids = sorted(
        {
            i
            for fold in range(4)
            for split in ("val", "trn")
            for i, _ in standard_pairs(dataset, fold, split)
        }
    )
    images, masks = root / "JPEGImages", root / "SegmentationClassAug"
    missing_images = [
        i for i in ids if not any((images / f"{i}{s}").exists() for s in (".jpg", ".jpeg", ".png"))
    ]
    missing_masks = [i for i in ids if not (masks / f"{i}.png").is_file()]
    return CheckReport(dataset, len(ids), missing_images, missing_masks)

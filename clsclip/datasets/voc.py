"""PASCAL-5i / COCO-20i data in the VOC2012 folder layout: index, samples, paired augmentation."""

from __future__ import annotations

import hashlib
import json
import logging
import os
import random
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageFilter

from clsclip.datasets.coco import CocoFolder
from clsclip.datasets.folds import (
    COCO_CLASSES,
    IGNORE,
    PASCAL_CLASSES,
    base_classes,
    novel_classes,
)
from clsclip.pipeline.images import IMAGE_SUFFIXES, load_image
from clsclip.pipeline.letterbox import letterbox_image
from clsclip.storage.files import write_json

logger = logging.getLogger(__name__)

MASK_DIRS = ("SegmentationClassAug", "SegmentationClass")
NOVEL_PIXELS = ("background", "ignore", "drop-image")
DEFAULT_NOVEL_PIXELS = "background"
"""What novel-class pixels of training images become unless told: 0, as in the references
(HSNet, LSeg), whose numbers the paper compares with."""


@dataclass(frozen=True)
class VocFolder:
    """A dataset root in the VOC2012 layout.

    ``JPEGImages/{id}.jpg`` (or .png), class-index masks ``SegmentationClassAug/{id}.png`` (or
    ``SegmentationClass/``; 0 background, 1..C classes, 255 ignore), and id lists
    ``ImageSets/Segmentation/{split}.txt``. An optional ``classes.txt`` (one name per line, in
    label order) names the classes; otherwise PASCAL VOC's or COCO's names are used.
    """

    root: Path
    mask_dir: Path

    @classmethod
    def open(cls, root: str | os.PathLike[str]) -> VocFolder:
        path = Path(root)
        if not path.is_dir():
            raise FileNotFoundError(f"data root not found: {path}")
        missing = [n for n in ("JPEGImages", "ImageSets/Segmentation") if not (path / n).is_dir()]
        masks = [path / n for n in MASK_DIRS if (path / n).is_dir()]
        if not masks:
            missing.append(" or ".join(MASK_DIRS))
        if missing:
            raise FileNotFoundError(f"{path} is not in the VOC2012 layout: missing {missing}")
        return cls(root=path, mask_dir=masks[0])

    def ids(self, split: str) -> list[str]:
        path = self.root / "ImageSets" / "Segmentation" / f"{split}.txt"
        if not path.is_file():
            available = sorted(p.stem for p in path.parent.glob("*.txt"))
            raise FileNotFoundError(f"no split list {path}; available splits: {available}")
        return [line.split()[0] for line in path.read_text().splitlines() if line.strip()]

    def class_names(self, dataset: str) -> list[str]:
        listed = self.root / "classes.txt"
        if listed.is_file():
            return [n.strip() for n in listed.read_text().splitlines() if n.strip()]
        return list(PASCAL_CLASSES if dataset == "pascal5i" else COCO_CLASSES)

    def image_path(self, image_id: str) -> Path:
        for suffix in IMAGE_SUFFIXES:
            path = self.root / "JPEGImages" / f"{image_id}{suffix}"
            if path.is_file():
                return path
        raise FileNotFoundError(f"no image for id {image_id!r} in {self.root / 'JPEGImages'}")

    def mask(self, image_id: str) -> np.ndarray:
        path = self.mask_dir / f"{image_id}.png"
        if not path.is_file():
            raise FileNotFoundError(f"no mask for id {image_id!r}: {path}")
        return read_label_image(path)

    def index(self, split: str) -> dict[str, dict[int, int]]:
        """Pixel count of each label in each image's mask.

        Cached in ``.clsclip-index-{split}.json`` in the root when it is writable (by rank 0
        only under torchrun, atomically). The cache is keyed by the split list and by every
        listed mask's size and modification time, so a changed list or a changed mask is
        indexed again, never scored from stale counts.
        """
        ids = self.ids(split)
        key = self._index_key(split, ids)
        cache = self.root / f".clsclip-index-{split}.json"
        cached = _read_index_cache(cache, key)
        if cached is not None:
            return cached
        found = {}
        for image_id in ids:
            labels, counts = np.unique(self.mask(image_id), return_counts=True)
            found[image_id] = {
                int(v): int(n) for v, n in zip(labels, counts, strict=True) if 0 < v < IGNORE
            }
        if int(os.environ.get("RANK", "0")) == 0:
            try:
                write_json(cache, {"key": key, "index": found}, indent=None)
            except OSError:  # a read-only data root: index again next time
                logger.debug("cannot write index cache %s", cache)
        return found

    def _index_key(self, split: str, ids: list[str]) -> str:
        """sha256 of the split list and of each listed mask's size and modification time."""
        digest = hashlib.sha256()
        digest.update(str(self.mask_dir.resolve()).encode())
        for image_id in ids:
            path = self.mask_dir / f"{image_id}.png"
            try:
                stat = path.stat()
            except FileNotFoundError:
                raise FileNotFoundError(f"no mask for id {image_id!r}: {path}") from None
            digest.update(f"{image_id}\0{stat.st_size}\0{stat.st_mtime_ns}\n".encode())
        return digest.hexdigest()


def _read_index_cache(path: Path, key: str) -> dict[str, dict[int, int]] | None:
    """The index stored under ``key``, or None (no cache, another key, an unreadable file)."""
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
        if not isinstance(raw, dict) or raw.get("key") != key:
            return None
        return {i: {int(k): int(v) for k, v in c.items()} for i, c in raw["index"].items()}
    except (OSError, ValueError, KeyError, AttributeError, TypeError):
        return None


LABEL_MODES = ("L", "P")


def read_label_image(path: Path) -> np.ndarray:
    """uint8 ``H x W`` class indices of a label image, which must be single-channel 8-bit
    (grayscale "L" or palette "P": the value is the index). `ValueError` naming the file for
    any other mode: RGB or 16-bit values would wrap around 255 (600 -> 88) and mean nothing."""
    try:
        with Image.open(path) as label:
            if label.mode not in LABEL_MODES:
                raise ValueError(
                    f"label image {path} is mode {label.mode!r}; labels must be single-channel "
                    f"8-bit class indices (PIL mode {' or '.join(LABEL_MODES)})"
                )
            return np.asarray(label, dtype=np.uint8)
    except (OSError, SyntaxError) as e:
        raise OSError(f"cannot read label image {path}: {e}") from e


def open_folder(root: str | os.PathLike[str]) -> VocFolder | CocoFolder:
    """A VOC-layout root, or a COCO 2014 root (``annotations/instances_*2014.json``) read through
    pycocotools."""
    if CocoFolder.is_coco_root(root) and not (Path(root) / "JPEGImages").is_dir():
        return CocoFolder.open(root)
    return VocFolder.open(root)


def binary_target(mask: np.ndarray, label: int, ignored: list[int]) -> np.ndarray:
    """uint8 ``H x W``: 1 for ``label``, 255 for ignore and for labels in ``ignored``, else 0."""
    target = (mask == label).astype(np.uint8)
    target[mask == IGNORE] = IGNORE
    if ignored:
        target[np.isin(mask, ignored)] = IGNORE
    return target


def augment(
    image: Image.Image, target: Image.Image, rng: random.Random
) -> tuple[Image.Image, Image.Image]:
    """Paired augmentation (METHOD.md): scale 0.9-1.1, rotation +-10 degrees, blur, horizontal
    flip, random crop keeping at least 80 % of each side. The target uses nearest sampling and
    255 (ignore) for pixels that come from outside the image."""
    scale = rng.uniform(0.9, 1.1)
    size = (max(1, round(image.width * scale)), max(1, round(image.height * scale)))
    image = image.resize(size, Image.Resampling.BILINEAR)
    target = target.resize(size, Image.Resampling.NEAREST)
    angle = rng.uniform(-10.0, 10.0)
    image = image.rotate(angle, Image.Resampling.BILINEAR, fillcolor=(124, 116, 104))
    target = target.rotate(angle, Image.Resampling.NEAREST, fillcolor=IGNORE)
    if rng.random() < 0.5:
        image = image.filter(ImageFilter.GaussianBlur(rng.uniform(0.1, 1.5)))
    if rng.random() < 0.5:
        image = image.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
        target = target.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
    w, h = image.size
    cw, ch = max(1, round(w * rng.uniform(0.8, 1.0))), max(1, round(h * rng.uniform(0.8, 1.0)))
    x0, y0 = rng.randint(0, w - cw), rng.randint(0, h - ch)
    box = (x0, y0, x0 + cw, y0 + ch)
    return image.crop(box), target.crop(box)


class FoldDataset(torch.utils.data.Dataset):
    """One sample per (image, class) pair of a fold: base classes for training, novel for testing.

    Each item is ``{"pixels": 3 x S x S float32, "target": S x S int64 (0, 1, 255),
    "class_name": str, "image_id": str}``, letterboxed like `Segmenter` inputs. In training,
    pixels of novel classes become background by default (``novel_pixels``).

    Args:
        root: the data root: VOC layout, or COCO 2014 with its instance annotations.
        dataset: ``"pascal5i"`` or ``"coco20i"`` (which fold split applies).
        fold: 0-3.
        split: the id list (``"trainaug"``, ``"train"``, ``"val"``).
        train: base classes with augmentation (True) or novel classes as they are (False).
        input_size, mean, std, resize_mode: the model input, as in the model's config.
        min_pixels: least pixels of a class for an (image, class) pair to count.
        seed: seed of the augmentation.
        classes: ``"base"`` or ``"novel"`` (default: base when training, novel otherwise).
        pairs: the (image id, label) pairs to use, as they are, instead of every pair of
            ``split`` with ``min_pixels`` pixels (the standard lists).
        novel_pixels: in training, what pixels of the fold's novel classes become:
            ``"background"`` (0, the references), ``"ignore"`` (255: never learnt as
            background), or ``"drop-image"`` (images holding any novel pixel are left out).
    """

    def __init__(
        self,
        root: str | os.PathLike[str],
        *,
        dataset: str,
        fold: int,
        split: str,
        train: bool,
        input_size: int,
        mean: tuple[float, float, float],
        std: tuple[float, float, float],
        min_pixels: int = 16,
        seed: int = 0,
        classes: str | None = None,
        resize_mode: str = "letterbox",
        pairs: list[tuple[str, int]] | None = None,
        novel_pixels: str = DEFAULT_NOVEL_PIXELS,
    ) -> None:
        self.folder = open_folder(root)
        self.names = self.folder.class_names(dataset)
        self.novel = novel_classes(dataset, fold, len(self.names))
        classes = classes or ("base" if train else "novel")
        if classes not in ("base", "novel"):
            raise ValueError(f"classes must be 'base' or 'novel', got {classes!r}")
        self.labels = (
            base_classes(dataset, fold, len(self.names)) if classes == "base" else self.novel
        )
        if novel_pixels not in NOVEL_PIXELS:
            raise ValueError(
                f"unknown novel_pixels {novel_pixels!r}; choose one of {list(NOVEL_PIXELS)}"
            )
        self.train, self.input_size, self.mean, self.std = train, input_size, mean, std
        self.seed, self.resize_mode, self.novel_pixels = seed, resize_mode, novel_pixels
        index = self.folder.index(split)
        listed = pairs is not None
        if pairs is None:
            pairs = [(i, label) for i, counts in index.items() for label in counts]
        missing = [i for i, _ in pairs if i not in index]
        if missing:
            raise FileNotFoundError(
                f"{len(missing)} image(s) of the list are not in split {split!r} of {root}, "
                f"e.g. {missing[:3]}; run clsclip data check"
            )
        novel = set(self.novel)
        self.samples = [
            (image_id, label)
            for image_id, label in pairs
            if label in self.labels
            and (listed or index[image_id].get(label, 0) >= min_pixels)
            and not (train and novel_pixels == "drop-image" and novel & set(index[image_id]))
        ]
        if not self.samples:
            raise ValueError(f"no (image, class) pairs of fold {fold} in split {split!r} of {root}")
        self.epoch = 0

    def __len__(self) -> int:
        return len(self.samples)

    def set_epoch(self, epoch: int) -> None:
        """Vary the augmentation between epochs (deterministically)."""
        self.epoch = epoch

    def load(self, index: int) -> tuple[Image.Image, np.ndarray, str]:
        """The original image, its binary target at label resolution, and the class name."""
        image_id, label = self.samples[index]
        image = load_image(self.folder.image_path(image_id))
        ignored = []
        if self.train and self.novel_pixels == "ignore":  # never learnt as background
            ignored = [n for n in self.novel if n != label]
        target = binary_target(self.folder.mask(image_id), label, ignored)
        return image, target, self.names[label - 1]

    def __getitem__(self, index: int) -> dict[str, object]:
        image, target, name = self.load(index)
        target_image = Image.fromarray(target, mode="L")
        if self.train:
            rng = random.Random(hash((self.seed, self.epoch, index)) & 0xFFFFFFFF)
            image, target_image = augment(image, target_image, rng)
        pixels, box = letterbox_image(image, self.input_size, self.mean, self.std, self.resize_mode)
        h, w = box.resized_size
        resized = target_image.resize((w, h), Image.Resampling.NEAREST)
        full = np.full((self.input_size, self.input_size), IGNORE, dtype=np.int64)
        full[:h, :w] = np.asarray(resized)
        return {
            "pixels": pixels,
            "target": torch.from_numpy(full),
            "class_name": name,
            "image_id": self.samples[index][0],
        }

"""The eight benchmarks the training-free methods report (ClearCLIP, NACLIP, SC-CLIP), read as
the references' mmseg configs read them: the standard folder layouts, the validation images,
their label maps as mmseg loads them (``reduce_zero_label`` where the config sets it), and the
references' class-name files (`clsclip/datasets/names/`, one per method where they differ).

A label map holds class indices 0 .. C-1 of the names file's lines and 255 (ignored). With a
background line (VOC21, Context60, COCO-Object) index 0 is the background.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

IGNORE = 255


@dataclass(frozen=True)
class Benchmark:
    """One benchmark's layout (paths relative to its data root, as the references' configs).

    Attributes:
        name: the ``--benchmark`` name.
        names_file: the references' class-name file (``cls_<names_file>.txt``).
        images, labels: folders of the images and the label maps.
        image_suffix, label_suffix: what follows a sample's name in each.
        split_file: the file listing the validation samples (None: every image found).
        reduce_zero_label: label 0 is ignored and the others shift down by one (mmseg's).
        background: whether the names file's first line is the background.
        root_hint: where the data usually lives, for error messages.
    """

    name: str
    names_file: str
    images: str
    labels: str
    image_suffix: str
    label_suffix: str
    split_file: str | None
    reduce_zero_label: bool
    background: bool
    root_hint: str


BENCHMARKS: dict[str, Benchmark] = {
    b.name: b
    for b in (
        Benchmark("voc21", "voc21", "JPEGImages", "SegmentationClass", ".jpg", ".png",
                  "ImageSets/Segmentation/val.txt", False, True, "VOCdevkit/VOC2012"),
        Benchmark("voc20", "voc20", "JPEGImages", "SegmentationClass", ".jpg", ".png",
                  "ImageSets/Segmentation/val.txt", True, False, "VOCdevkit/VOC2012"),
        Benchmark("context60", "context60", "JPEGImages", "SegmentationClassContext", ".jpg",
                  ".png", "ImageSets/SegmentationContext/val.txt", False, True,
                  "VOCdevkit/VOC2010"),
        Benchmark("context59", "context59", "JPEGImages", "SegmentationClassContext", ".jpg",
                  ".png", "ImageSets/SegmentationContext/val.txt", True, False,
                  "VOCdevkit/VOC2010"),
        Benchmark("object", "coco_object", "images/val2017", "annotations/val2017", ".jpg",
                  "_instanceTrainIds.png", None, False, True, "coco_stuff164k"),
        Benchmark("stuff", "coco_stuff", "images/val2017", "annotations/val2017", ".jpg",
                  "_labelTrainIds.png", None, False, False, "coco_stuff164k"),
        Benchmark("cityscapes", "city_scapes", "leftImg8bit/val", "gtFine/val",
                  "_leftImg8bit.png", "_gtFine_labelTrainIds.png", None, False, False,
                  "cityscapes"),
        Benchmark("ade", "ade20k", "images/validation", "annotations/validation", ".jpg",
                  ".png", None, True, False, "ade/ADEChallengeData2016"),
    )
}  # fmt: skip
"""The benchmarks by ``--benchmark`` name."""

NAMES_METHODS = ("clearclip", "naclip")
_NAMES = Path(__file__).parent / "names"


def class_names(benchmark: str, method: str = "naclip") -> list[tuple[str, ...]]:
    """The lines of the references' names file of ``benchmark``: one tuple of synonyms per
    class, in label order (ClearCLIP's files split on ``,``, NACLIP's on ``, ``; names are
    stripped). ``method``: whose file (they differ for VOC and COCO-Object: NACLIP adds
    synonyms and its 26-word background); others use NACLIP's."""
    spec = _benchmark(benchmark)
    folder = method if method in NAMES_METHODS else "naclip"
    text = (_NAMES / folder / f"{spec.names_file}.txt").read_text(encoding="utf-8")
    return [
        tuple(name.strip() for name in line.split(",") if name.strip())
        for line in text.splitlines()
        if line.strip()
    ]


@dataclass(frozen=True)
class Sample:
    """One validation image and its label map file."""

    name: str
    image: Path
    label: Path


def samples(benchmark: str, root: str | os.PathLike[str]) -> list[Sample]:
    """The validation samples of ``benchmark`` under ``root`` (sorted by name), each image with
    its label file; `FileNotFoundError` naming what is missing."""
    spec = _benchmark(benchmark)
    base = Path(root)
    images, labels = base / spec.images, base / spec.labels
    for folder in (images, labels):
        if not folder.is_dir():
            raise FileNotFoundError(
                f"{spec.name}: no folder {str(folder)!r}; --data-root must be the "
                f"{spec.root_hint} folder (holding {spec.images}/ and {spec.labels}/)"
            )
    if spec.split_file is not None:
        listing = base / spec.split_file
        if not listing.is_file():
            raise FileNotFoundError(f"{spec.name}: the split file {str(listing)!r} is missing")
        names = [n.strip() for n in listing.read_text().splitlines() if n.strip()]
        found = [(n, images / f"{n}{spec.image_suffix}", labels / f"{n}{spec.label_suffix}")
                 for n in names]  # fmt: skip
    else:  # every image (Cityscapes: one folder per city)
        found = []
        for image in sorted(images.rglob(f"*{spec.image_suffix}")):
            relative = image.relative_to(images).as_posix()[: -len(spec.image_suffix)]
            found.append((relative, image, labels / f"{relative}{spec.label_suffix}"))
    missing = [str(p) for _, i, label in found for p in (i, label) if not p.is_file()]
    if missing:
        raise FileNotFoundError(
            f"{spec.name}: {len(missing)} listed files are missing, first {missing[0]!r}"
        )
    if not found:
        raise FileNotFoundError(f"{spec.name}: no images ending {spec.image_suffix} in {images}")
    return sorted((Sample(n, i, label) for n, i, label in found), key=lambda s: s.name)


def read_label(benchmark: str, path: str | os.PathLike[str]) -> np.ndarray:
    """A label map as mmseg loads it: the PNG's values (palette indices for VOC), with
    ``reduce_zero_label``: 0 becomes 255 and the others shift down by one. ``H x W`` uint8."""
    with Image.open(path) as image:
        label = np.array(image)
    if label.ndim != 2:
        raise ValueError(f"{path}: a label map must have one channel, got shape {label.shape}")
    label = label.astype(np.int64)
    if _benchmark(benchmark).reduce_zero_label:  # mmseg's LoadAnnotations, step by step
        label[label == 0] = IGNORE
        label = label - 1
        label[label == IGNORE - 1] = IGNORE
    return np.clip(label, 0, IGNORE).astype(np.uint8)


def iterate(benchmark: str, root: str | os.PathLike[str]) -> Iterator[tuple[Sample, np.ndarray]]:
    """``(sample, label map)`` of every validation sample."""
    for sample in samples(benchmark, root):
        yield sample, read_label(benchmark, sample.label)


def _benchmark(name: str) -> Benchmark:
    if name not in BENCHMARKS:
        raise ValueError(f"unknown benchmark {name!r}; choose one of {list(BENCHMARKS)}")
    return BENCHMARKS[name]

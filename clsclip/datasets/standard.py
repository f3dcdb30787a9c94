"""The standard PASCAL-5i / COCO-20i (image, class) lists and the reference episode rules.

The lists are HSNet's (Min et al., ICCV 2021), as shipped in LSeg's ``fewshot_data`` (MIT
licence), the loader behind LSeg's zero-shot numbers that the ClsCLIP paper compares with; they
are bundled in ``clsclip/datasets/splits/`` (COCO's converted from pickles to gzipped JSON,
order kept). See ``splits/README.md`` for their format and provenance.
"""

from __future__ import annotations

import gzip
import json
from functools import lru_cache
from importlib import resources
from typing import Any

import numpy as np

from clsclip.datasets.folds import check_fold, novel_classes

Pair = tuple[str, int]
"""An (image id, 1-based class label) pair."""

STANDARD_PAIRS = {0: 346, 1: 451, 2: 725, 3: 346}
"""Test pairs of PASCAL-5i folds 0-3 in the standard lists."""


def _read(*parts: str) -> bytes:
    return resources.files("clsclip.datasets").joinpath("splits", *parts).read_bytes()


@lru_cache(maxsize=16)
def _coco(split: str, fold: int) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(
        gzip.decompress(_read("coco20i", split, f"fold{fold}.json.gz"))
    )
    return data


def coco_image_id(image_id: int, folder: str) -> str:
    """COCO's file stem of an image id in ``train2014`` or ``val2014``."""
    return f"COCO_{folder}_{image_id:012d}"


def standard_pairs(dataset: str, fold: int, split: str) -> list[Pair]:
    """The (image id, label) pairs of a standard list, in file order.

    Args:
        dataset: ``"pascal5i"`` or ``"coco20i"``.
        fold: 0-3.
        split: ``"val"`` (the test pairs of the fold's novel classes) or ``"trn"`` (PASCAL: the
            training pairs of the fold's own classes; COCO: of the fold's 60 base classes).

    PASCAL ids are VOC ids (``2007_000033``); COCO ids are file stems
    (``COCO_val2014_000000429717``), class by class in the list's order.
    """
    check_fold(dataset, fold)
    if split not in ("val", "trn"):
        raise ValueError(f"standard split must be 'val' or 'trn', got {split!r}")
    if dataset == "pascal5i":
        text = _read("pascal5i", split, f"fold{fold}.txt").decode("ascii")
        pairs = []
        for line in text.split():
            image_id, label = line.rsplit("__", 1)
            pairs.append((image_id, int(label)))
        return pairs
    data = _coco(split, fold)
    folder = data["image_folder"][0]
    return [
        (coco_image_id(int(i), folder), int(k) + 1)
        for k, images in data["classes"].items()
        for i in images
    ]


def standard_training_pairs(dataset: str, fold: int) -> list[Pair]:
    """The pairs a fold-``fold`` model trains on in the references: PASCAL, the ``trn`` lists of
    the other three folds; COCO, the fold's own ``trn`` list (its base classes)."""
    check_fold(dataset, fold)
    if dataset == "coco20i":
        return standard_pairs(dataset, fold, "trn")
    return [p for other in range(4) if other != fold for p in standard_pairs(dataset, other, "trn")]


def standard_episodes(dataset: str, fold: int, episodes: int = 1000, seed: int = 0) -> list[Pair]:
    """The test episodes of the reference protocol.

    PASCAL-5i: episode i is pair ``val[i % n]`` (no random draw). COCO-20i: each episode draws
    a class uniformly from the fold's novel classes, then an image of that class uniformly from
    its list, from numpy's legacy ``RandomState(seed)`` (HSNet's ``fix_randseed(0)`` and its
    zero-shot loader: nothing else is drawn in between).
    """
    check_fold(dataset, fold)
    if dataset == "pascal5i":
        pairs = standard_pairs(dataset, fold, "val")
        return [pairs[i % len(pairs)] for i in range(episodes)]
    data = _coco("val", fold)
    folder = data["image_folder"][0]
    class_ids = [k - 1 for k in novel_classes(dataset, fold)]  # 0-based, as HSNet
    state = np.random.RandomState(seed)
    out = []
    for _ in range(episodes):
        k = int(state.choice(class_ids, 1, replace=False)[0])
        image = int(state.choice(data["classes"][str(k)], 1, replace=False)[0])
        out.append((coco_image_id(image, folder), k + 1))
    return out


def balanced_episodes(pairs: list[Pair], episodes: int, seed: int) -> list[Pair]:
    """Episodes drawn from any pairs (the "all-pairs" protocol): every pair once when there are
    no more pairs than episodes; otherwise a class drawn uniformly, then one of its pairs, so
    that frequent classes (COCO's person) do not take most episodes."""
    if len(pairs) <= episodes:
        return list(pairs)
    by_class: dict[int, list[Pair]] = {}
    for pair in pairs:
        by_class.setdefault(pair[1], []).append(pair)
    classes = sorted(by_class)
    rng = np.random.default_rng(seed)
    left: dict[int, list[Pair]] = {}
    out = []
    for _ in range(episodes):
        label = classes[int(rng.integers(len(classes)))]
        if not left.get(label):  # each class's pairs in a fresh random order, then again
            left[label] = [by_class[label][i] for i in rng.permutation(len(by_class[label]))]
        out.append(left[label].pop())
    return out

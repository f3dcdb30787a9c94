"""Episodic evaluation on a fold's novel classes: the standard protocol and the all-pairs one.

``standard`` reproduces the references the ClsCLIP paper compares with (HSNet's lists and
episode rules, as LSeg used them): fixed (image, class) lists, PASCAL episode i = pair
``i % n``, COCO episodes drawn class-first from numpy's legacy RandomState, scoring at the
network input (image and label plainly resized to it, the label with nearest sampling), 255
ignored on PASCAL only, and a class without episodes counted as 0. ``all-pairs`` scores every
(image, class) pair with at least ``min_pixels`` pixels at the label's own resolution (PFENet's
convention), drawn class-balanced when there are more pairs than episodes.
"""

from __future__ import annotations

import logging
import os
from collections import Counter
from typing import Any

import numpy as np
from PIL import Image

from clsclip.datasets import FoldDataset, VocFolder, open_folder
from clsclip.datasets.folds import IGNORE, novel_classes
from clsclip.datasets.standard import Pair, balanced_episodes, standard_episodes
from clsclip.evaluation.boxes import component_boxes
from clsclip.evaluation.metrics import EpisodicIoU
from clsclip.pipeline.images import load_image
from clsclip.segmenter import Segmenter

logger = logging.getLogger(__name__)

PROPOSAL_MODES = ("none", "yolo", "gt")
PROTOCOLS = ("standard", "all-pairs")
SCORE_AT = ("input", "original")


def resize_nearest(label: np.ndarray, size: int) -> np.ndarray:
    """``label`` resized to ``size x size`` as ``F.interpolate(mode="nearest")`` does (source
    index ``floor(dst * in / out)``), the references' way of bringing labels to the input."""
    rows = np.minimum(
        (np.arange(size) * (label.shape[0] / size)).astype(np.int64), label.shape[0] - 1
    )
    cols = np.minimum(
        (np.arange(size) * (label.shape[1] / size)).astype(np.int64), label.shape[1] - 1
    )
    return label[rows[:, None], cols[None, :]]


def episode_target(mask: np.ndarray, label: int, *, ignore: bool) -> np.ndarray:
    """uint8: 1 for ``label``, 0 elsewhere; 255 kept where the mask says ignore (``ignore``,
    PASCAL's boundaries) or folded into 0 (COCO in the standard protocol has no ignore)."""
    target = (mask == label).astype(np.uint8)
    if ignore:
        target[mask == IGNORE] = IGNORE
    return target


def evaluate(
    segmenter: Segmenter,
    *,
    data_root: str | os.PathLike[str],
    dataset: str,
    fold: int,
    protocol: str = "standard",
    split: str = "val",
    episodes: int = 1000,
    seed: int = 0,
    proposals: str = "none",
    min_pixels: int = 16,
    score_at: str | None = None,
    classes: str = "novel",
    progress: bool = True,
) -> dict[str, Any]:
    """Score a segmenter on a fold's novel classes.

    Args:
        segmenter: the model to score (its own threshold decides the masks).
        data_root: a VOC-layout root or a COCO 2014 root (see `clsclip.datasets.open_folder`).
        dataset: ``"pascal5i"`` or ``"coco20i"``.
        fold: 0-3.
        protocol: ``"standard"`` (the bundled lists and reference episodes; ``split``,
            ``min_pixels`` and ``classes`` do not apply) or ``"all-pairs"``.
        split: the id list of the all-pairs protocol.
        episodes: number of episodes (1,000 in both references).
        seed: the COCO draw (standard: 0 as in the references) or the all-pairs draw.
        proposals: ``"none"`` (ClsCLIP), ``"yolo"`` (ClsCLIP+ with ultralytics' detector) or
            ``"gt"`` (ClsCLIP+ with one box per connected component of the true mask).
        min_pixels: all-pairs: least pixels of the class for a pair to count.
        score_at: ``"input"`` (the image plainly resized to the model input, the label resized
            with nearest sampling, scored there: the references) or ``"original"`` (the label's
            own resolution: PFENet's). Default: input for standard, original for all-pairs.
        classes: all-pairs: ``"novel"`` or ``"base"`` (the classes trained on, as a check).
        progress: show a progress bar.

    Returns:
        A JSON-ready dict: ``miou``, ``fb_iou``, ``class_iou`` and ``class_episodes`` (per
        class name), ``episodes`` and every setting of the protocol.
    """
    if proposals not in PROPOSAL_MODES:
        raise ValueError(f"unknown proposals {proposals!r}; choose one of {list(PROPOSAL_MODES)}")
    if protocol not in PROTOCOLS:
        raise ValueError(f"unknown protocol {protocol!r}; choose one of {list(PROTOCOLS)}")
    score_at = score_at or ("input" if protocol == "standard" else "original")
    if score_at not in SCORE_AT:
        raise ValueError(f"unknown score_at {score_at!r}; choose one of {list(SCORE_AT)}")
    folder = open_folder(data_root)
    names = folder.class_names(dataset)
    if protocol == "standard":
        if classes != "novel":
            raise ValueError("the standard protocol scores novel classes; use all-pairs for base")
        pairs = standard_episodes(dataset, fold, episodes, seed)
        labels = novel_classes(dataset, fold)
        _check_listed(folder, sorted({image_id for image_id, _ in pairs}), dataset)
    else:
        data = FoldDataset(
            data_root,
            dataset=dataset,
            fold=fold,
            split=split,
            train=False,
            input_size=segmenter.config.image_size,
            mean=segmenter.model.image_mean,
            std=segmenter.model.image_std,
            min_pixels=min_pixels,
            classes=classes,
        )
        pairs = balanced_episodes(list(data.samples), episodes, seed)
        labels = data.labels
    ignore = not (protocol == "standard" and dataset == "coco20i")
    scores = EpisodicIoU(labels, empty_is_zero=protocol == "standard")
    iterator: Any = pairs
    if progress:
        from tqdm import tqdm

        iterator = tqdm(pairs, desc=f"{dataset} fold {fold}", unit="episode")
    for image_id, label in iterator:
        image = load_image(folder.image_path(image_id))
        target = episode_target(folder.mask(image_id), label, ignore=ignore)
        prediction, target = _score_episode(
            segmenter, image, target, names[label - 1], proposals, score_at
        )
        scores.update(label, prediction, target)
    counts = Counter(label for _, label in pairs)
    logger.info("%s fold %d: mIoU %.4f, FB-IoU %.4f", dataset, fold, scores.miou(), scores.fb_iou())
    return {
        "dataset": dataset,
        "fold": fold,
        "protocol": protocol,
        "score_at": score_at,
        "split": "standard val list" if protocol == "standard" else split,
        "episodes": len(pairs),
        "seed": seed,
        "proposals": proposals,
        "classes": classes,
        "min_pixels": None if protocol == "standard" else min_pixels,
        "ignore_255": ignore,
        "empty_classes_count_zero": protocol == "standard",
        "image_size": segmenter.config.image_size,
        "resize_mode": segmenter.config.resize_mode,
        "miou": scores.miou(),
        "fb_iou": scores.fb_iou(),
        "class_iou": {names[c - 1]: v for c, v in scores.class_iou().items()},
        "class_episodes": {names[c - 1]: counts.get(c, 0) for c in labels},
    }


def _check_listed(folder: Any, ids: list[str], dataset: str) -> None:
    """Before any episode: every listed image and mask is in a VOC-layout root."""
    if not isinstance(folder, VocFolder):
        return
    missing = []
    for image_id in ids:
        try:
            folder.image_path(image_id)
        except FileNotFoundError:
            missing.append(image_id)
            continue
        if not (folder.mask_dir / f"{image_id}.png").is_file():
            missing.append(image_id)
    if missing:
        raise FileNotFoundError(
            f"{len(missing)} of the {len(ids)} images of the standard episodes (or their masks) "
            f"are missing from {folder.root}, e.g. {missing[:3]}; see clsclip data check "
            f"--dataset {dataset} --data-root {folder.root}"
        )


def _score_episode(
    segmenter: Segmenter,
    image: Image.Image,
    target: np.ndarray,
    name: str,
    proposals: str,
    score_at: str,
) -> tuple[np.ndarray, np.ndarray]:
    """The predicted mask and the target, at the resolution they are scored at.

    Scored at the input (the references), the label is resized to ``S x S`` with nearest
    sampling. Each model sees its own preprocessing: a ``"resize"`` model gets the image plainly
    resized to ``S x S`` (bilinear, as the references feed theirs); a ``"letterbox"`` model gets
    the original image, and its full-resolution mask is brought to the scoring grid the way the
    label is (nearest).
    """
    size = segmenter.config.image_size
    stretch = score_at == "input" and segmenter.config.resize_mode == "resize"
    if stretch:
        image = image.resize((size, size), Image.Resampling.BILINEAR)
        target = resize_nearest(target, size)
    source: Any = None if proposals == "none" else "yolo"
    if proposals == "gt":  # boxes in pixels of the image the model is given
        source = {name: component_boxes(target == 1)}
    mask = segmenter.segment(image, [name], proposals=source).mask(name)
    if score_at == "input" and not stretch:
        return resize_nearest(mask, size), resize_nearest(target, size)
    return mask, target


__all__ = ["PROTOCOLS", "Pair", "evaluate"]

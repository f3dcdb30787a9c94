"""The episodic evaluation of METHOD.md: seeded (image, novel class) episodes per fold."""

from __future__ import annotations

import logging
import os
from typing import Any

import numpy as np

from clsclip.datasets import FoldDataset
from clsclip.evaluation.boxes import component_boxes
from clsclip.evaluation.metrics import EpisodicIoU
from clsclip.segmenter import Segmenter

logger = logging.getLogger(__name__)

PROPOSAL_MODES = ("none", "yolo", "gt")


def sample_episodes(num_pairs: int, episodes: int, seed: int) -> list[int]:
    """Indices of the (image, class) pairs of the episodes: a seeded draw, without replacement
    while there are enough pairs, with replacement beyond."""
    rng = np.random.default_rng(seed)
    replace = episodes > num_pairs
    return [int(i) for i in rng.choice(num_pairs, size=episodes, replace=replace)]


def evaluate(
    segmenter: Segmenter,
    *,
    data_root: str | os.PathLike[str],
    dataset: str,
    fold: int,
    split: str = "val",
    episodes: int = 1000,
    seed: int = 0,
    proposals: str = "none",
    min_pixels: int = 16,
    progress: bool = True,
    classes: str = "novel",
) -> dict[str, Any]:
    """Score a segmenter on a fold's novel classes.

    Args:
        segmenter: the model to score (its own threshold decides the masks).
        data_root: a VOC-layout root (see `clsclip.datasets.VocFolder`).
        dataset: ``"pascal5i"`` or ``"coco20i"``.
        fold: 0-3.
        split: the id list to draw episodes from.
        episodes: number of (image, class) episodes (1,000 in the protocol).
        seed: seed of the draw; the same seed gives the same episodes.
        proposals: ``"none"`` (ClsCLIP), ``"yolo"`` (ClsCLIP+ with ultralytics' detector) or
            ``"gt"`` (ClsCLIP+ with one box per connected component of the true mask).
        min_pixels: least pixels of the class for an (image, class) pair to be drawn.
        progress: show a progress bar.
        classes: ``"novel"`` (the protocol) or ``"base"`` (the classes trained on, as a check).

    Returns:
        A JSON-ready dict: ``miou``, ``fb_iou``, ``class_iou`` (per class name), ``episodes``
        and the settings. Predictions are scored at the label's own resolution.
    """
    if proposals not in PROPOSAL_MODES:
        raise ValueError(f"unknown proposals {proposals!r}; choose one of {list(PROPOSAL_MODES)}")
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
    chosen = sample_episodes(len(data), episodes, seed)
    scores = EpisodicIoU(data.labels)
    iterator: Any = chosen
    if progress:
        from tqdm import tqdm

        iterator = tqdm(chosen, desc=f"{dataset} fold {fold}", unit="episode")
    for index in iterator:
        image, target, name = data.load(index)
        source: Any = None if proposals == "none" else "yolo"
        if proposals == "gt":
            source = {name: component_boxes(target == 1)}
        result = segmenter.segment(image, [name], proposals=source)
        scores.update(data.samples[index][1], result.masks[0], target)
    class_iou = {data.names[c - 1]: v for c, v in scores.class_iou().items()}
    logger.info("%s fold %d: mIoU %.4f, FB-IoU %.4f", dataset, fold, scores.miou(), scores.fb_iou())
    return {
        "dataset": dataset,
        "fold": fold,
        "split": split,
        "episodes": episodes,
        "seed": seed,
        "proposals": proposals,
        "classes": classes,
        "miou": scores.miou(),
        "fb_iou": scores.fb_iou(),
        "class_iou": class_iou,
    }

"""The calibration set through the network: each labelled image's raw logits counted against
its labels (`clsclip.results.calibration`), one image at a time."""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import replace
from typing import Any

import numpy as np

from clsclip.pipeline.images import load_image
from clsclip.pipeline.predict import Request, Settings, predict_images
from clsclip.results.calibration import PixelCounts


def count_pixels(
    settings: Settings,
    samples: Iterable[tuple[Any, Any]],
    request: Request,
    *,
    ignore_index: int = 255,
    keep_images: bool = False,
    max_pixels: int | None = None,
) -> PixelCounts:
    """Histograms of the uncalibrated logits of ``request``'s classes over ``samples``
    (``(image, label_map)`` pairs: label 0 background, ``k + 1`` class k, ``ignore_index``
    not counted). `ValueError` naming the sample for a label map that does not fit."""
    raw = replace(request, scale=None, bias=None)  # fit on what the network says
    counts = PixelCounts(list(request.names), keep_images=keep_images)
    for i, sample in enumerate(samples):
        if not isinstance(sample, (tuple, list)) or len(sample) != 2:
            raise TypeError(
                f"sample {i}: give (image, label_map) pairs, got {type(sample).__name__}"
            )
        image, labels = sample
        where = f"sample {i}" + (f" ({image})" if isinstance(image, (str, os.PathLike)) else "")
        loaded = load_image(image, max_pixels=max_pixels)
        labels = check_label_map(labels, loaded.size, len(request.names), ignore_index, where)
        prediction = predict_images(settings, [loaded], raw)[0]
        counts.add(prediction.prediction, labels, ignore_index)
    return counts


def check_label_map(
    labels: Any, size: tuple[int, int], num_classes: int, ignore_index: int, where: str
) -> np.ndarray:
    """``labels`` as an ``H x W`` integer array of the image's size with values in 0 .. K and
    ``ignore_index``; `ValueError` naming ``where`` otherwise."""
    array = np.asarray(labels)
    width, height = size
    if array.ndim != 2 or array.shape != (height, width):
        raise ValueError(
            f"{where}: the label map is {' x '.join(map(str, array.shape[::-1]))}, the image "
            f"{width} x {height}"
        )
    if not np.issubdtype(array.dtype, np.integer):
        raise ValueError(f"{where}: the label map must hold integers, got {array.dtype}")
    values = np.unique(array)
    beyond = [int(v) for v in values if v != ignore_index and not 0 <= v <= num_classes]
    if beyond:
        raise ValueError(
            f"{where}: label values {beyond[:5]} are beyond the {num_classes} classes (0 is "
            f"background, 1 .. {num_classes} the classes, {ignore_index} ignored)"
        )
    return array.astype(np.int64)

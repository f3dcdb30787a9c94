"""Presence scores: how sure the model is that a class is in the image at all, read from the
low-resolution output only."""

from __future__ import annotations

import math

import numpy as np
import torch

from clsclip.geometry import Letterbox
from clsclip.results.prediction import LowResPrediction, calibrate

PRESENCE_POOL = 3
"""Side of the mean filter over patch-grid cells before the peak of `presence_scores`."""


def presence_scores(prediction: LowResPrediction) -> np.ndarray:
    """float32 ``K``: each class's presence score, the sigmoid of the largest
    ``PRESENCE_POOL`` x ``PRESENCE_POOL`` mean of its logits on the patch grid, inside the image
    (the letterbox padding left out), over the whole image and its ClsCLIP+ crops, with
    negatives and calibration applied. Read from the low-resolution output only."""
    num_classes = prediction.num_classes
    peaks = _pooled_peak(prediction.cell_logits(), prediction.letterbox)
    for crop in prediction.crops:
        k = crop.class_index
        logits = calibrate(crop.logits.float()[None], prediction.scale, prediction.bias, [k])
        peaks[k] = torch.maximum(peaks[k], _pooled_peak(logits, crop.letterbox)[0])
    assert peaks.shape == (num_classes,)
    return peaks.sigmoid().cpu().numpy().astype(np.float32)


def _pooled_peak(logits: torch.Tensor, box: Letterbox) -> torch.Tensor:
    grid_h, grid_w = int(logits.shape[1]), int(logits.shape[2])
    input_h, input_w = box.input_shape
    rows = max(1, min(grid_h, math.ceil(box.resized_size[0] * grid_h / input_h)))
    cols = max(1, min(grid_w, math.ceil(box.resized_size[1] * grid_w / input_w)))
    if (grid_h, grid_w) == box.original_size == box.resized_size:  # logits at the image's size
        rows, cols = grid_h, grid_w
    inside = logits[:, :rows, :cols].clamp(min=-1e4)  # negatives' -inf: very unlikely, finite
    pooled = torch.nn.functional.avg_pool2d(
        inside[:, None], PRESENCE_POOL, stride=1, padding=PRESENCE_POOL // 2,
        count_include_pad=False,
    )  # fmt: skip
    return pooled.amax(dim=(1, 2, 3))

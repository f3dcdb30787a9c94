"""The way back and what users hold: result types, full resolution on demand (letterbox
inverse, crop paste, fusion), output formats (COCO RLE, supervision, label PNG, npz), drawing."""

from clsclip.results.restore import (
    CropLogits,
    FullResolution,
    LowResPrediction,
    class_cutoffs,
    presence_scores,
    threshold_logit,
)
from clsclip.results.result import ImageOutcome, SegmentationResult, TensorSegmentation

__all__ = [
    "CropLogits",
    "FullResolution",
    "ImageOutcome",
    "LowResPrediction",
    "SegmentationResult",
    "TensorSegmentation",
    "class_cutoffs",
    "presence_scores",
    "threshold_logit",
]

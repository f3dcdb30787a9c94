"""The way back and what users hold: result types, full resolution on demand (letterbox
inverse, crop paste, fusion), output formats (COCO RLE, supervision, label PNG, npz), drawing."""

from clsclip.results.outcomes import ImageOutcome, TensorSegmentation
from clsclip.results.prediction import CropLogits, LowResPrediction
from clsclip.results.presence import presence_scores
from clsclip.results.restore import FullResolution
from clsclip.results.result import SegmentationResult
from clsclip.results.thresholds import Thresholds, class_cutoffs, threshold_logit

__all__ = [
    "CropLogits",
    "FullResolution",
    "ImageOutcome",
    "LowResPrediction",
    "SegmentationResult",
    "TensorSegmentation",
    "Thresholds",
    "class_cutoffs",
    "presence_scores",
    "threshold_logit",
]

"""The plain full-resolution post-processing of clsclip 0.1 (before lazy results), kept as the
reference the lazy, tiled, logit-space path must agree with: two `F.interpolate` calls per view,
sigmoid, crops pasted and fused on probabilities, masks and label map from K x H x W arrays."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from clsclip.geometry import Letterbox
from clsclip.results.prediction import LowResPrediction
from clsclip.results.restore import FullResolution


def restore_all(logits: torch.Tensor, box: Letterbox) -> torch.Tensor:
    """The implementation's way back for all K classes at once: float32 K x H x W (the code under
    test, through `FullResolution`, one class at a time)."""
    full = FullResolution(LowResPrediction(logits.float(), box))
    return torch.stack([full.class_logits(k) for k in range(logits.shape[0])])


def restore(logits: torch.Tensor, box: Letterbox) -> torch.Tensor:
    size = box.input_size
    x = F.interpolate(logits[None].float(), size=(size, size), mode="bilinear", align_corners=False)
    h, w = box.resized_size
    x = x[:, :, :h, :w]
    if (h, w) != box.original_size:
        x = F.interpolate(x, size=box.original_size, mode="bilinear", align_corners=False)
    return x[0]


def probs(prediction: LowResPrediction) -> np.ndarray:
    """float32 K x H x W fused probabilities."""
    prediction = prediction.to("cpu")
    out = restore(prediction.logits, prediction.letterbox).sigmoid().numpy()
    if not prediction.crops:
        return out
    zoomed = np.full_like(out, np.nan)
    for crop in prediction.crops:
        x0, y0, x1, y1 = crop.region
        piece = restore(crop.logits[None], crop.letterbox)[0].sigmoid().numpy()
        if prediction.fusion == "max":
            view = out[crop.class_index, y0:y1, x0:x1]
            np.maximum(view, piece, out=view)
        else:
            view = zoomed[crop.class_index, y0:y1, x0:x1]
            np.fmax(view, piece, out=view)
    return out if prediction.fusion == "max" else np.where(np.isnan(zoomed), out, zoomed)


def label_map(probs: np.ndarray, threshold: float) -> np.ndarray:
    masks = probs > threshold
    masked = np.where(masks, probs, np.float32(-1.0))
    best = masked.argmax(axis=0)
    above = np.take_along_axis(masked, best[None], axis=0)[0] >= 0
    return np.where(above, best + 1, 0).astype(np.int32)

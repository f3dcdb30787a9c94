"""The answers of ``POST /v1/segment``: JSON with COCO RLE masks, or a palette label PNG."""

from __future__ import annotations

import io
import math
from collections.abc import Mapping
from typing import Any

import numpy as np

from clsclip.results import SegmentationResult
from clsclip.results.files import save_png
from clsclip.results.formats import encode_rle, label_image


def answer_json(result: SegmentationResult, model: str) -> dict[str, Any]:
    """The JSON answer: the image size, the model, and per class its name, label, area, score
    (mean probability inside its mask, 0 for an empty one), presence (the image-level score of
    `SegmentationResult.scores`), threshold and mask as COCO compressed RLE (the encoding of
    ``clsclip segment --format coco``)."""
    height, width = result.size
    presence, thresholds = result.scores, result.thresholds
    classes = []
    for k, name in enumerate(result.class_names):
        mask = result.mask(name)
        area = int(mask.sum())
        score = float(result.prob(name)[mask].mean()) if area else 0.0
        classes.append({"name": name, "label": k + 1, "area": area,
                        "score": score if math.isfinite(score) else 0.0,
                        "presence": presence[name], "threshold": thresholds[name],
                        "mask": encode_rle(mask)})  # fmt: skip
    return {"width": width, "height": height, "model": model, "threshold": result.threshold,
            "classes": classes}  # fmt: skip


def label_png(result: SegmentationResult) -> bytes:
    """The palette label map (0 background, k + 1 for class k) as PNG bytes."""
    buffer = io.BytesIO()
    save_png(label_image(result.label_map, len(result.class_names)), buffer)
    return buffer.getvalue()


def masks_of(answer: Mapping[str, Any]) -> dict[str, np.ndarray]:
    """Decoded masks of a JSON answer (for clients and tests), by class name."""
    from pycocotools import mask as mask_utils

    out = {}
    for entry in answer["classes"]:
        rle = {"size": entry["mask"]["size"], "counts": entry["mask"]["counts"].encode("ascii")}
        out[entry["name"]] = mask_utils.decode(rle).astype(bool)
    return out

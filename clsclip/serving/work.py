"""What a segmentation request is, how it is checked, run in batches, and answered."""

from __future__ import annotations

import io
import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from PIL import Image

from clsclip.checks import check_threshold
from clsclip.classes import ClassSpec, resolve_classes
from clsclip.pipeline.images import load_image
from clsclip.proposals.boxes import BoxProposer
from clsclip.results import SegmentationResult
from clsclip.results.formats import encode_rle, label_image

FORMATS = ("json", "label_png")


class ApiError(Exception):
    """A request the server refuses: an HTTP status, a machine-readable code, the limit it
    broke (if any), and a one-line message."""

    def __init__(self, status: int, code: str, message: str, limit: str | None = None) -> None:
        super().__init__(message)
        self.status, self.code, self.message, self.limit = status, code, message, limit

    def body(self) -> dict[str, Any]:
        error: dict[str, Any] = {"code": self.code, "message": self.message}
        if self.limit is not None:
            error["limit"] = self.limit
        return {"error": error}


@dataclass(frozen=True)
class Limits:
    """What one request may ask for.

    Attributes:
        max_body_bytes: the whole request body.
        max_image_pixels: the image (``H * W``), checked from its header before decoding.
        max_classes: class names per request.
        max_name_chars: characters per class name.
        max_boxes: ClsCLIP+ boxes per request.
    """

    max_body_bytes: int = 20 * 2**20
    max_image_pixels: int = 40_000_000
    max_classes: int = 100
    max_name_chars: int = 200
    max_boxes: int = 100


@dataclass(frozen=True)
class ServeRequest:
    """One checked request: the decoded image, its classes, threshold, boxes and format."""

    image: Image.Image
    classes: tuple[ClassSpec, ...]
    threshold: float | dict[str, float] | None
    boxes: Mapping[str, Any] | None
    format: str
    min_score: float | None = None


def parse_classes(text: str | None, limits: Limits) -> tuple[ClassSpec, ...]:
    """The ``classes`` field: a JSON list of names and class specs (``{"name": "dog",
    "prompts": [...], "negatives": [...], "threshold": 0.4}``, or ``{"dog": [...]}``), or one
    JSON object from names to prompts, as `Segmenter.segment` takes them."""
    if text is None:
        raise ApiError(
            422, "missing_field", "the form needs a 'classes' field (a JSON list of names)"
        )
    try:
        value = json.loads(text)
    except json.JSONDecodeError as e:
        raise ApiError(422, "bad_classes", f"'classes' is not JSON: {e}") from None
    if not isinstance(value, (list, dict)):
        raise ApiError(422, "bad_classes", "'classes' must be a JSON list of class names "
                       "(or class specs), or an object from names to prompts")  # fmt: skip
    try:
        specs = resolve_classes(value)
    except (TypeError, ValueError) as e:
        raise ApiError(422, "bad_classes", str(e)) from None
    if len(specs) > limits.max_classes:
        raise ApiError(413, "too_many_classes", f"{len(specs)} classes, over the limit of "
                       f"{limits.max_classes}", limit="max_classes")  # fmt: skip
    texts = sum((len(s.prompts) + len(s.negatives) for s in specs), 0)
    if texts > 4 * limits.max_classes:
        raise ApiError(413, "too_many_prompts", f"{texts} prompts and negatives, over the limit "
                       f"of {4 * limits.max_classes} (4 x max_classes)",
                       limit="max_classes")  # fmt: skip
    for spec in specs:
        for name in (spec.name, *spec.prompts, *spec.negatives):
            if len(name) > limits.max_name_chars:
                raise ApiError(413, "name_too_long", f"class name {name[:40]!r}... is "
                               f"{len(name)} characters, over the limit of "
                               f"{limits.max_name_chars}", limit="max_name_chars")  # fmt: skip
    return tuple(specs)


def parse_threshold(text: str | None) -> float | dict[str, float] | None:
    """The ``threshold`` field: a number in [0, 1], or a JSON object of some classes'
    thresholds (``{"dog": 0.4}``)."""
    if text is None or text == "":
        return None
    if not text.lstrip().startswith("{"):
        return _unit_number(text, "threshold")
    try:
        value = json.loads(text)
        if not isinstance(value, dict):
            raise ValueError("not a JSON object")
        return {str(k): check_threshold(v) for k, v in value.items()}
    except (TypeError, ValueError) as e:  # json.JSONDecodeError is a ValueError
        raise ApiError(422, "bad_threshold", f"threshold: {e}") from None


def parse_min_score(text: str | None) -> float | None:
    """The ``min_score`` field: a number in [0, 1]."""
    return None if text is None or text == "" else _unit_number(text, "min_score")


def _unit_number(text: str, field: str) -> float:
    try:
        return check_threshold(float(text))
    except ValueError:
        raise ApiError(
            422, f"bad_{field}", f"{field} must be a number in [0, 1], got {text!r}"
        ) from None


def parse_boxes(
    text: str | None, classes: Sequence[str], limits: Limits
) -> Mapping[str, Any] | None:
    if text is None or text == "":
        return None
    try:
        value = json.loads(text)
    except json.JSONDecodeError as e:
        raise ApiError(422, "bad_boxes", f"'boxes' is not JSON: {e}") from None
    try:
        proposer = BoxProposer(value)
        proposer.check_classes(classes)
    except (TypeError, ValueError) as e:
        raise ApiError(422, "bad_boxes", str(e)) from None
    count = sum(len(b) for b in proposer.boxes.values())
    if count > limits.max_boxes:
        raise ApiError(413, "too_many_boxes",
                       f"{count} boxes, over the limit of {limits.max_boxes}",
                       limit="max_boxes")  # fmt: skip
    return value


def decode_image(data: bytes, limits: Limits) -> Image.Image:
    """The upload as an RGB image; 413 over the pixel limit (read from the header, before any
    decoding, so decompression bombs cost nothing), 415 for bytes that are not an image."""
    if not data:
        raise ApiError(422, "missing_field", "the form needs an 'image' file")
    try:
        with Image.open(io.BytesIO(data)) as header:  # reads the header only
            width, height = header.size
    except (OSError, ValueError, Image.DecompressionBombError) as e:
        raise ApiError(
            415, "not_an_image", f"the 'image' is not an image PIL can read: {e}"
        ) from None
    if width * height > limits.max_image_pixels:
        raise ApiError(413, "image_too_large", f"the image is {width} x {height} = "
                       f"{width * height:,} pixels, over the limit of {limits.max_image_pixels:,}",
                       limit="max_image_pixels")  # fmt: skip
    try:
        return load_image(data, max_pixels=limits.max_image_pixels)
    except (OSError, ValueError) as e:  # a file cut short, a broken stream
        raise ApiError(415, "not_an_image", f"cannot decode the 'image': {e}") from None


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
    label_image(result.label_map, len(result.class_names)).save(buffer, format="PNG")
    return buffer.getvalue()


def masks_of(answer: Mapping[str, Any]) -> dict[str, np.ndarray]:
    """Decoded masks of a JSON answer (for clients and tests), by class name."""
    from pycocotools import mask as mask_utils

    out = {}
    for entry in answer["classes"]:
        rle = {"size": entry["mask"]["size"], "counts": entry["mask"]["counts"].encode("ascii")}
        out[entry["name"]] = mask_utils.decode(rle).astype(bool)
    return out

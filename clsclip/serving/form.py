"""The request's form: its fields read and checked (classes, threshold, min_score, boxes, format,
the image's header), with one `ApiError` per fault; what one request may ask for (`Limits`)."""

from __future__ import annotations

import io
import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from PIL import Image

from clsclip.checks import check_threshold
from clsclip.classes import ClassSpec, resolve_classes
from clsclip.pipeline.images import load_image
from clsclip.proposals.boxes import BoxProposer

FORMATS = ("json", "label_png")

SEGMENT_OPENAPI: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "content": {"multipart/form-data": {"schema": {
            "type": "object",
            "required": ["image", "classes"],
            "properties": {
                "image": {"type": "string", "format": "binary",
                          "description": "the image file (PNG, JPEG, WebP, TIFF, ...)"},
                "classes": {"type": "string", "example": '["dog", "grass"]',
                            "description": "a JSON list of class names or class specs "
                            '({"name": "dog", "prompts": [...], "negatives": [...]}), '
                            "or an object from names to prompts"},
                "threshold": {"type": "string", "example": "0.5",
                              "description": "mask threshold in [0, 1] (default: the "
                              'model\'s), or a JSON object of some classes\' ({"dog": 0.4})'},
                "min_score": {"type": "number", "minimum": 0, "maximum": 1,
                              "description": "classes whose presence score is below it get "
                              "empty masks"},
                "boxes": {"type": "string", "example": '{"dog": [[10, 20, 200, 180]]}',
                          "description": "ClsCLIP+ boxes per class, JSON, in pixels"},
                "format": {"type": "string", "enum": ["json", "label_png"], "default": "json"},
            },
        }}},
    },
    "responses": {
        "200": {"description": "JSON masks (COCO RLE), or the palette label map as PNG",
                "content": {"image/png": {}}},
        "4XX": {"description": "a refused request: {\"error\": {\"code\", \"message\", "
                "\"limit\"}}"},
        "503": {"description": "overloaded or shutting down (Retry-After)"},
        "504": {"description": "no answer within the timeout"},
    },
}  # fmt: skip
"""The form of ``POST /v1/segment`` for the OpenAPI page (the route reads it itself, to answer
every fault with the server's own JSON errors)."""


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

    @property
    def max_text_bytes(self) -> int:
        """The most a text field of the form may hold: what the other limits allow (every
        prompt and negative at ``max_name_chars`` characters of 12 bytes, a JSON-escaped
        surrogate pair each, and the boxes), so a field of megabytes is refused while it is
        read, before any of it is parsed."""
        names = 4 * self.max_classes * (12 * self.max_name_chars + 64)
        return names + 128 * self.max_boxes + 4096


@dataclass(frozen=True)
class ServeRequest:
    """One checked request: the decoded image, its classes, threshold, boxes and format."""

    image: Image.Image
    classes: tuple[ClassSpec, ...]
    threshold: float | dict[str, float] | None
    boxes: Mapping[str, Any] | None
    format: str
    min_score: float | None = None
    deadline: float = math.inf
    """`time.perf_counter` time past which its client has been answered 504: never run then."""


@dataclass(frozen=True)
class Fields:
    """The checked text fields of one request (everything but the image)."""

    classes: tuple[ClassSpec, ...]
    threshold: float | dict[str, float] | None
    boxes: Mapping[str, Any] | None
    format: str
    min_score: float | None


def parse_fields(texts: Mapping[str, str | None], limits: Limits) -> Fields:
    """Every text field of the form, checked (runs off the event loop: a long class list takes
    time to resolve)."""
    classes = parse_classes(texts.get("classes"), limits)
    threshold = parse_threshold(texts.get("threshold"))
    if isinstance(threshold, dict):
        unknown = sorted(set(threshold) - {spec.name for spec in classes})
        if unknown:
            raise ApiError(422, "bad_threshold", f"thresholds given for {unknown}, which are "
                           "not among the classes")  # fmt: skip
    min_score = parse_min_score(texts.get("min_score"))
    boxes = parse_boxes(texts.get("boxes"), [spec.name for spec in classes], limits)
    output = texts.get("format") or "json"
    if output not in FORMATS:
        raise ApiError(422, "bad_format", f"format must be one of {list(FORMATS)}, got {output!r}")
    return Fields(classes, threshold, boxes, output, min_score)


def _json(text: str, field: str) -> Any:
    """A field's JSON; 422 naming the field for text that is not JSON or nests too deep."""
    try:
        return json.loads(text)
    except json.JSONDecodeError as e:
        raise ApiError(422, f"bad_{field}", f"'{field}' is not JSON: {e}") from None
    except RecursionError:
        raise ApiError(422, f"bad_{field}", f"'{field}' nests too deep") from None


def parse_classes(text: str | None, limits: Limits) -> tuple[ClassSpec, ...]:
    """The ``classes`` field: a JSON list of names and class specs (``{"name": "dog",
    "prompts": [...], "negatives": [...], "threshold": 0.4}``, or ``{"dog": [...]}``), or one
    JSON object from names to prompts, as `Segmenter.segment` takes them."""
    if text is None:
        raise ApiError(
            422, "missing_field", "the form needs a 'classes' field (a JSON list of names)"
        )
    stripped = text.strip()
    if stripped and stripped[0] not in '[{"':  # a bare name, or names separated by commas
        raise ApiError(422, "bad_classes", "'classes' must be JSON: a list of names, e.g. "
                       f'["{stripped.split(",")[0].strip()}"], not {stripped[:40]!r}')  # fmt: skip
    value = _json(text, "classes")
    if not isinstance(value, (list, dict)):
        raise ApiError(422, "bad_classes", "'classes' must be a JSON list of class names "
                       "(or class specs), or an object from names to prompts")  # fmt: skip
    try:
        specs = resolve_classes(value)
    except (TypeError, ValueError, OverflowError, RecursionError) as e:
        raise ApiError(422, "bad_classes", str(e) or type(e).__name__) from None
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
    value = _json(text, "threshold")
    try:
        if not isinstance(value, dict):
            raise ValueError("not a JSON object")
        return {str(k): check_threshold(v) for k, v in value.items()}
    except (TypeError, ValueError, OverflowError) as e:
        raise ApiError(422, "bad_threshold", f"threshold: {e}") from None


def parse_min_score(text: str | None) -> float | None:
    """The ``min_score`` field: a number in [0, 1]."""
    return None if text is None or text == "" else _unit_number(text, "min_score")


def _unit_number(text: str, field: str) -> float:
    try:
        return check_threshold(float(text))
    except (ValueError, OverflowError):
        raise ApiError(
            422, f"bad_{field}", f"{field} must be a number in [0, 1], got {text!r}"
        ) from None


def parse_boxes(
    text: str | None, classes: Sequence[str], limits: Limits
) -> Mapping[str, Any] | None:
    if text is None or text == "":
        return None
    value = _json(text, "boxes")
    try:
        proposer = BoxProposer(value)
        proposer.check_classes(classes)
    except (TypeError, ValueError, OverflowError, RecursionError) as e:
        raise ApiError(422, "bad_boxes", str(e) or type(e).__name__) from None
    count = sum(len(b) for b in proposer.boxes.values())
    if count > limits.max_boxes:
        raise ApiError(413, "too_many_boxes",
                       f"{count} boxes, over the limit of {limits.max_boxes}",
                       limit="max_boxes")  # fmt: skip
    return value


def image_pixels(data: bytes, limits: Limits) -> int:
    """The upload's pixel count, read from its header alone (decompression bombs cost
    nothing); 413 over the pixel limit, 415 for bytes that are not an image."""
    if not data:
        raise ApiError(422, "missing_field", "the form needs an 'image' file")
    try:
        with Image.open(io.BytesIO(data)) as header:  # reads the header only
            width, height = header.size
    except Image.DecompressionBombError as e:  # PIL's own bound, past ours: too large
        raise ApiError(413, "image_too_large", f"the image is too large ({e})",
                       limit="max_image_pixels") from None  # fmt: skip
    except (OSError, ValueError) as e:
        reason = type(e).__name__ if "<" in str(e) else str(e)  # no memory addresses
        raise ApiError(
            415, "not_an_image", f"the 'image' is not an image PIL can read ({reason})"
        ) from None
    if width * height > limits.max_image_pixels:
        raise ApiError(413, "image_too_large", f"the image is {width} x {height} = "
                       f"{width * height:,} pixels, over the limit of {limits.max_image_pixels:,}",
                       limit="max_image_pixels")  # fmt: skip
    return width * height


def decode_image(data: bytes, limits: Limits) -> Image.Image:
    """The upload as an RGB image, once `image_pixels` has admitted its header; 415 for a
    broken file (the pixel limit is checked again from the header by `load_image`)."""
    try:
        return load_image(data, max_pixels=limits.max_image_pixels)
    except (OSError, ValueError) as e:  # a file cut short, a broken stream
        reason = type(e).__name__ if "<" in str(e) else str(e)
        raise ApiError(415, "not_an_image", f"cannot decode the 'image' ({reason})") from None

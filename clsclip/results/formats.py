"""Results in the formats other tools read: COCO RLE, supervision, FiftyOne, label PNGs.

pycocotools (the reference COCO RLE codec), scipy (connected components), supervision and
fiftyone are optional extras, imported when used, with an install hint.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np
from PIL import Image

from clsclip.optional import require
from clsclip.results.drawing import palette
from clsclip.results.prediction import LowResPrediction
from clsclip.results.restore import FullResolution
from clsclip.results.thresholds import class_cutoffs


def encode_rle(mask: np.ndarray) -> dict[str, Any]:
    """COCO compressed RLE of a bool ``H x W`` mask (``counts`` as a str, JSON-ready)."""
    mask_utils = require("pycocotools.mask", "coco", purpose="COCO RLE")
    rle = mask_utils.encode(np.asfortranarray(mask.astype(np.uint8)))
    return {"size": [int(v) for v in rle["size"]], "counts": rle["counts"].decode("ascii")}


def rle_stats(rle: dict[str, Any]) -> tuple[int, list[float]]:
    mask_utils = require("pycocotools.mask", "coco", purpose="COCO RLE")
    coded = {"size": rle["size"], "counts": rle["counts"].encode("ascii")}
    area = int(mask_utils.area(coded))
    bbox = [float(v) for v in mask_utils.toBbox(coded)]
    return area, bbox


def _components(mask: np.ndarray) -> Iterator[np.ndarray]:
    """Each 8-connected component of ``mask`` as a full-size bool mask, one at a time: a map of
    thousands of specks never holds them all at once."""
    ndimage = require("scipy.ndimage", "coco", purpose="COCO instances")
    labels, _ = ndimage.label(mask, structure=np.ones((3, 3), bool))  # 8-connected
    for i, box in enumerate(ndimage.find_objects(labels), start=1):
        part = np.zeros(mask.shape, bool)
        part[box] = labels[box] == i
        yield part


def present_classes(
    prediction: LowResPrediction, threshold: float | Sequence[float]
) -> Iterator[tuple[int, np.ndarray, np.ndarray]]:
    """(k, float32 probabilities, bool mask) of each class whose mask is not empty, one class at
    a time; the mask thresholds logits exactly as `SegmentationResult.mask` does (``threshold``:
    one probability threshold, or one per class)."""
    full = FullResolution(prediction)
    cutoffs = class_cutoffs(threshold, prediction.num_classes)
    for k in range(prediction.num_classes):
        logits = full.class_logits(k)
        cutoff = cutoffs if isinstance(cutoffs, float) else cutoffs[k]
        mask = (logits > cutoff).cpu().numpy()
        if mask.any():
            yield k, logits.sigmoid_().cpu().numpy(), mask


def coco_annotations(
    prediction: LowResPrediction,
    threshold: float | Sequence[float],
    *,
    image_id: int,
    instances: bool = False,
) -> list[dict[str, Any]]:
    """COCO annotations of one image's network output at a probability threshold: per class
    with a non-empty mask, one annotation (or, with ``instances``, one per 8-connected
    component), category id k + 1 for class k.

    Each has ``segmentation`` (compressed RLE), ``area``, ``bbox`` (``x, y, w, h``), ``score``
    (mean probability inside the mask) and ``iscrowd`` 0; ``id`` is left for the caller.
    """
    out = []
    for k, part, score in regions(prediction, threshold, instances=instances):
        rle = encode_rle(part)
        area, bbox = rle_stats(rle)
        out.append(
            {
                "image_id": image_id,
                "category_id": k + 1,
                "segmentation": rle,
                "area": area,
                "bbox": bbox,
                "score": score,
                "iscrowd": 0,
            }
        )
    return out


def label_studio_prediction(
    prediction: LowResPrediction,
    class_names: Sequence[str],
    threshold: float | Sequence[float],
    *,
    from_name: str = "label",
    to_name: str = "image",
    model_version: str = "clsclip",
    instances: bool = False,
) -> dict[str, Any]:
    """A Label Studio prediction of one image: ``{"model_version", "score", "result"}``, one
    brush region per class with a non-empty mask (or, with ``instances``, per 8-connected
    component), its score the mean probability inside; the prediction's score is the mean of
    its regions' (0 for none)."""
    from clsclip.results.label_studio import brush_results

    found = [
        (class_names[k], part, score)
        for k, part, score in regions(prediction, threshold, instances=instances)
    ]
    result = brush_results(found, prediction.letterbox.original_size, from_name=from_name,
                           to_name=to_name)  # fmt: skip
    score = float(np.mean([r["score"] for r in result])) if result else 0.0
    return {"model_version": model_version, "score": round(score, 6), "result": result}


def coco_categories(class_names: Sequence[str]) -> list[dict[str, Any]]:
    return [{"id": k + 1, "name": name, "supercategory": ""} for k, name in enumerate(class_names)]


def _box(mask: np.ndarray) -> tuple[int, int, int, int]:
    """``x0, y0, x1, y1`` (exclusive end) of a non-empty bool mask."""
    rows, cols = np.nonzero(mask.any(axis=1))[0], np.nonzero(mask.any(axis=0))[0]
    return int(cols[0]), int(rows[0]), int(cols[-1]) + 1, int(rows[-1]) + 1


def regions(
    prediction: LowResPrediction, threshold: float | Sequence[float], *, instances: bool = False
) -> Iterator[tuple[int, np.ndarray, float]]:
    """(k, bool mask, mean probability inside) of each class with a non-empty mask, in class
    order; with ``instances``, one per 8-connected component (needs scipy)."""
    for k, prob, mask in present_classes(prediction, threshold):
        for part in _components(mask) if instances else [mask]:
            yield k, part, float(prob[part].mean())


def to_supervision(
    prediction: LowResPrediction,
    class_names: Sequence[str],
    threshold: float | Sequence[float],
    *,
    instances: bool = False,
) -> Any:
    """A `supervision.Detections`: one detection per class with a non-empty mask, or per
    8-connected component with ``instances`` (``mask`` bool ``N x H x W``, ``xyxy`` its box,
    ``class_id`` k, ``confidence`` the mean probability inside the mask,
    ``data["class_name"]``)."""
    sv = require("supervision", "supervision", purpose="to_supervision")
    crops, ids, scores, boxes = [], [], [], []
    for k, mask, score in regions(prediction, threshold, instances=instances):
        x0, y0, x1, y1 = _box(mask)
        boxes.append((x0, y0, x1, y1))
        crops.append(mask[y0:y1, x0:x1].copy())  # the full mask goes; the output holds one
        ids.append(k)
        scores.append(score)
    height, width = prediction.letterbox.original_size
    masks = np.zeros((len(crops), height, width), bool)
    for i, ((x0, y0, x1, y1), crop) in enumerate(zip(boxes, crops, strict=True)):
        masks[i, y0:y1, x0:x1] = crop
    return sv.Detections(
        xyxy=np.asarray(boxes, np.float32).reshape(-1, 4),
        mask=masks,
        class_id=np.asarray(ids, int),
        confidence=np.asarray(scores, np.float32),
        data={"class_name": np.asarray([class_names[k] for k in ids], dtype=str)},
    )


def mask_targets(class_names: Sequence[str]) -> dict[int, str]:
    """FiftyOne's mask targets of a label map: ``{k + 1: name}`` (0 is background)."""
    return {k + 1: name for k, name in enumerate(class_names)}


def _relative_span(start: int, end: int, size: int) -> tuple[float, float]:
    """``start / size`` and ``(end - start) / size``, nudged up by ulps where needed so that
    ``int(size * x) == start`` and ``int(size * (x + w)) == end``: FiftyOne (eta) truncates
    relative boxes to pixels, and ``15 / 52 * 52`` is 14.999999999999998."""
    x = start / size
    while int(size * x) < start:
        x = float(np.nextafter(x, np.inf))
    w = end / size - x
    while int(size * (x + w)) < end:
        w = float(np.nextafter(w, np.inf))
    return x, w


def fiftyone_segmentation(label_map: np.ndarray, num_classes: int) -> Any:
    """A `fiftyone.core.labels.Segmentation` of a label map (0 background, k + 1 class k: the
    values of `mask_targets`): uint8 up to 255 classes, uint16 beyond, as `label_image`."""
    labels = require("fiftyone.core.labels", "fiftyone", purpose="to_fiftyone")
    dtype = np.uint8 if num_classes <= 255 else np.uint16
    return labels.Segmentation(mask=label_map.astype(dtype))


def fiftyone_detections(
    prediction: LowResPrediction, class_names: Sequence[str], threshold: float | Sequence[float]
) -> Any:
    """A `fiftyone.core.labels.Detections`: one per 8-connected component of each class's
    mask, ``bounding_box`` relative ``[x, y, w, h]`` (FiftyOne's renderer gives back the exact
    pixels), ``mask`` the component cropped to its box, ``confidence`` the mean probability
    inside."""
    labels = require("fiftyone.core.labels", "fiftyone", purpose="to_fiftyone")
    height, width = prediction.letterbox.original_size
    detections = []
    for k, mask, score in regions(prediction, threshold, instances=True):
        x0, y0, x1, y1 = _box(mask)
        (x, w), (y, h) = _relative_span(x0, x1, width), _relative_span(y0, y1, height)
        detections.append(
            labels.Detection(
                label=class_names[k],
                bounding_box=[x, y, w, h],
                mask=mask[y0:y1, x0:x1].copy(),  # not a view that keeps the full mask
                confidence=score,
            )
        )
    return labels.Detections(detections=detections)


def label_image(label_map: np.ndarray, num_classes: int) -> Image.Image:
    """A label map as a PNG-ready image: 8-bit palette (0 black, k + 1 in class k's overlay
    colour) for up to 255 classes, 16-bit grayscale beyond."""
    if num_classes <= 255:
        image = Image.fromarray(label_map.astype(np.uint8), mode="P")
        colors = np.concatenate([np.zeros((1, 3), np.uint8), palette(num_classes)])
        image.putpalette(colors.reshape(-1).tolist())
        return image
    return Image.fromarray(label_map.astype(np.uint16))

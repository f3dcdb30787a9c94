"""Results in the formats other tools read: COCO RLE, supervision, label PNGs, npz logits.

pycocotools (the reference COCO RLE codec), scipy (connected components) and supervision are
optional extras, imported when used, with an install hint.
"""

from __future__ import annotations

import json
import os
import zipfile
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO

import numpy as np
import torch
from PIL import Image

from clsclip.postprocess import CropLogits, FullResolution, LowResPrediction, threshold_logit
from clsclip.preprocess import Letterbox
from clsclip.visualize import palette
from clsclip.zoom import Region

if TYPE_CHECKING:
    from clsclip.results import SegmentationResult

NPZ_VERSION = 1


def _require(module: str, extra: str) -> Any:
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError as e:
        raise ImportError(
            f'this needs {module.split(".")[0]}: pip install "clsclip[{extra}]"'
        ) from e


def encode_rle(mask: np.ndarray) -> dict[str, Any]:
    """COCO compressed RLE of a bool ``H x W`` mask (``counts`` as a str, JSON-ready)."""
    mask_utils = _require("pycocotools.mask", "coco")
    rle = mask_utils.encode(np.asfortranarray(mask.astype(np.uint8)))
    return {"size": [int(v) for v in rle["size"]], "counts": rle["counts"].decode("ascii")}


def _rle_stats(rle: dict[str, Any]) -> tuple[int, list[float]]:
    mask_utils = _require("pycocotools.mask", "coco")
    coded = {"size": rle["size"], "counts": rle["counts"].encode("ascii")}
    area = int(mask_utils.area(coded))
    bbox = [float(v) for v in mask_utils.toBbox(coded)]
    return area, bbox


def _components(mask: np.ndarray) -> list[np.ndarray]:
    ndimage = _require("scipy.ndimage", "coco")
    labels, count = ndimage.label(mask, structure=np.ones((3, 3), bool))  # 8-connected
    return [labels == i for i in range(1, count + 1)]


def _present_classes(
    result: SegmentationResult,
) -> Iterator[tuple[int, np.ndarray, np.ndarray]]:
    """(k, float32 probabilities, bool mask) of each class whose mask is not empty, one class at
    a time; the mask thresholds logits exactly as `SegmentationResult.mask` does."""
    full = FullResolution(result.prediction)
    cutoff = threshold_logit(result.threshold)
    for k in range(len(result.class_names)):
        logits = full.class_logits(k)
        mask = (logits > cutoff).cpu().numpy()
        if mask.any():
            yield k, logits.sigmoid_().cpu().numpy(), mask


def coco_annotations(
    result: SegmentationResult, *, image_id: int, instances: bool = False
) -> list[dict[str, Any]]:
    """COCO annotations of one result: per class with a non-empty mask, one annotation (or, with
    ``instances``, one per 8-connected component), category id k + 1 for class k.

    Each has ``segmentation`` (compressed RLE), ``area``, ``bbox`` (``x, y, w, h``), ``score``
    (mean probability inside the mask) and ``iscrowd`` 0; ``id`` is left for the caller.
    """
    out = []
    for k, prob, mask in _present_classes(result):
        for part in _components(mask) if instances else [mask]:
            rle = encode_rle(part)
            area, bbox = _rle_stats(rle)
            out.append(
                {
                    "image_id": image_id,
                    "category_id": k + 1,
                    "segmentation": rle,
                    "area": area,
                    "bbox": bbox,
                    "score": float(prob[part].mean()),
                    "iscrowd": 0,
                }
            )
    return out


def coco_categories(class_names: Sequence[str]) -> list[dict[str, Any]]:
    return [{"id": k + 1, "name": name, "supercategory": ""} for k, name in enumerate(class_names)]


def to_supervision(result: SegmentationResult) -> Any:
    """A `supervision.Detections`: one detection per class with a non-empty mask (``mask``
    bool ``N x H x W``, ``xyxy`` its box, ``class_id`` k, ``confidence`` the mean probability
    inside the mask, ``data["class_name"]``)."""
    sv = _require("supervision", "supervision")
    masks, ids, scores, boxes = [], [], [], []
    for k, prob, mask in _present_classes(result):
        rows, cols = np.nonzero(mask.any(axis=1))[0], np.nonzero(mask.any(axis=0))[0]
        boxes.append([cols[0], rows[0], cols[-1] + 1, rows[-1] + 1])
        masks.append(mask)
        ids.append(k)
        scores.append(float(prob[mask].mean()))
    height, width = result.size
    return sv.Detections(
        xyxy=np.asarray(boxes, np.float32).reshape(-1, 4),
        mask=np.stack(masks) if masks else np.zeros((0, height, width), bool),
        class_id=np.asarray(ids, int),
        confidence=np.asarray(scores, np.float32),
        data={"class_name": np.asarray([result.class_names[k] for k in ids], dtype=str)},
    )


def label_image(label_map: np.ndarray, num_classes: int) -> Image.Image:
    """A label map as a PNG-ready image: 8-bit palette (0 black, k + 1 in class k's overlay
    colour) for up to 255 classes, 16-bit grayscale beyond."""
    if num_classes <= 255:
        image = Image.fromarray(label_map.astype(np.uint8), mode="P")
        colors = np.concatenate([np.zeros((1, 3), np.uint8), palette(num_classes)])
        image.putpalette(colors.reshape(-1).tolist())
        return image
    return Image.fromarray(label_map.astype(np.uint16))


def save_npz(result: SegmentationResult, path: str | os.PathLike[str] | BinaryIO) -> None:
    """The network output of one result (low-resolution logits, crops, geometry, names,
    threshold) as a compressed ``.npz``; `load_npz` rebuilds the result."""
    prediction = result.prediction.to("cpu")
    crops = prediction.crops
    grid = prediction.logits.shape[1:]
    _savez(
        path,
        version=np.int64(NPZ_VERSION),
        class_names=np.asarray(json.dumps(result.class_names)),
        threshold=np.float64(result.threshold),
        fusion=np.asarray(prediction.fusion),
        logits=prediction.logits.numpy(),
        letterbox=np.asarray(_box(prediction.letterbox), np.int64),
        crop_class=np.asarray([c.class_index for c in crops], np.int64),
        crop_region=np.asarray([c.region for c in crops], np.int64).reshape(-1, 4),
        crop_letterbox=np.asarray([_box(c.letterbox) for c in crops], np.int64).reshape(-1, 5),
        crop_logits=np.stack([c.logits.numpy() for c in crops])
        if crops
        else np.zeros((0, *grid), np.float32),
        boxes=np.asarray(json.dumps({k: v.tolist() for k, v in result.boxes.items()})),
    )


def _savez(path: str | os.PathLike[str] | BinaryIO, **arrays: np.ndarray) -> None:
    """`numpy.savez_compressed` with fixed entry dates, so that equal results give equal files
    (numpy stamps each entry with the current time)."""
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for name, value in arrays.items():
            info = zipfile.ZipInfo(f"{name}.npy", date_time=(1980, 1, 1, 0, 0, 0))
            info.compress_type = zipfile.ZIP_DEFLATED
            with archive.open(info, "w", force_zip64=True) as f:
                np.lib.format.write_array(f, np.asanyarray(value), allow_pickle=False)


def load_npz(path: str | os.PathLike[str], image: Image.Image | None = None) -> SegmentationResult:
    """A `SegmentationResult` from a file written by `save_npz` (on the CPU)."""
    from clsclip.results import SegmentationResult

    with np.load(Path(path), allow_pickle=False) as data:
        if int(data["version"]) != NPZ_VERSION:
            raise ValueError(f"{path} is npz version {int(data['version'])}, not {NPZ_VERSION}")
        crops = tuple(
            CropLogits(int(k), _region(region), _letterbox(box), torch.from_numpy(logits))
            for k, region, box, logits in zip(
                data["crop_class"],
                data["crop_region"],
                data["crop_letterbox"],
                data["crop_logits"],
                strict=True,
            )
        )
        prediction = LowResPrediction(
            torch.from_numpy(data["logits"]),
            _letterbox(data["letterbox"]),
            crops,
            str(data["fusion"]),  # type: ignore[arg-type]
        )
        boxes = {k: np.asarray(v, np.float32) for k, v in json.loads(str(data["boxes"])).items()}
        names = json.loads(str(data["class_names"]))
        return SegmentationResult(names, prediction, float(data["threshold"]), image, boxes)


def _box(box: Letterbox) -> list[int]:
    return [*box.original_size, *box.resized_size, box.input_size]


def _region(values: np.ndarray) -> Region:
    x0, y0, x1, y1 = (int(v) for v in values)
    return x0, y0, x1, y1


def _letterbox(values: np.ndarray) -> Letterbox:
    h, w, rh, rw, size = (int(v) for v in values)
    return Letterbox((h, w), (rh, rw), size)

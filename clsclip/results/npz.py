"""A result's network output as a compressed ``.npz``, and back, checked before allocation.

Reading treats the file as untrusted: every entry's declared shape and dtype is read from its
``.npy`` header and bounded before any array is decompressed (a small file can declare
gigabytes), the geometry is checked (positive sizes, crops inside the image, the image within
the pixel limit of images), and object arrays are refused (no pickle).
"""

from __future__ import annotations

import json
import math
import os
import zipfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np
import torch

from clsclip.checks import MAX_IMAGE_PIXELS
from clsclip.config import MAX_IMAGE_SIZE
from clsclip.geometry import Letterbox, Region
from clsclip.proposals.zoom import FUSION_MODES
from clsclip.results.prediction import CropLogits, LowResPrediction

NPZ_VERSION = 1
MAX_CLASSES = 65_536
"""Most classes a result file may hold."""
MAX_CROPS = 65_536
"""Most ClsCLIP+ crops a result file may hold."""
MAX_TEXT_BYTES = 64 * 2**20
"""Largest JSON entry (class names, boxes)."""
MAX_ARRAY_BYTES = 2**30
"""Most bytes all arrays of a result file may declare together (1 GiB: 150 classes of 352 x 352
float32 logits are 74 MB), checked from the headers before any is decompressed."""
_ENTRIES = (
    "version", "class_names", "threshold", "fusion", "logits", "letterbox", "crop_class",
    "crop_region", "crop_letterbox", "crop_logits", "boxes",
)  # fmt: skip


_OPTIONAL = ("class_thresholds", "min_score", "negatives", "negative_of", "scale", "bias")
"""Entries of files written since class specs and calibration (absent: none of them)."""


@dataclass(frozen=True)
class NpzContent:
    """What a result file holds: names, network output, thresholds, proposal boxes per class."""

    class_names: list[str]
    prediction: LowResPrediction
    threshold: float
    boxes: dict[str, np.ndarray]
    class_thresholds: dict[str, float] = field(default_factory=dict)
    min_score: float | None = None


def write_npz(
    path: str | os.PathLike[str] | BinaryIO,
    *,
    class_names: list[str],
    prediction: LowResPrediction,
    threshold: float,
    boxes: Mapping[str, np.ndarray],
    class_thresholds: Mapping[str, float] | None = None,
    min_score: float | None = None,
) -> None:
    """Write one result's network output (`read_npz` reads it back); equal inputs give equal
    bytes."""
    prediction = prediction.to("cpu")
    crops = prediction.crops
    grid = prediction.logits.shape[1:]
    _savez(
        path,
        version=np.int64(NPZ_VERSION),
        class_names=np.asarray(json.dumps(class_names)),
        threshold=np.float64(threshold),
        fusion=np.asarray(prediction.fusion),
        logits=prediction.logits.numpy(),
        letterbox=np.asarray(_box(prediction.letterbox), np.int64),
        crop_class=np.asarray([c.class_index for c in crops], np.int64),
        crop_region=np.asarray([c.region for c in crops], np.int64).reshape(-1, 4),
        crop_letterbox=np.asarray([_box(c.letterbox) for c in crops], np.int64).reshape(-1, 5),
        crop_logits=np.stack([c.logits.numpy() for c in crops])
        if crops
        else np.zeros((0, *grid), np.float32),
        boxes=np.asarray(json.dumps({k: v.tolist() for k, v in boxes.items()})),
        class_thresholds=np.asarray(json.dumps(dict(class_thresholds or {}))),
        min_score=np.float64(math.nan if min_score is None else min_score),
        negatives=(prediction.negatives.numpy() if prediction.negatives is not None
                   else np.zeros((0, *grid), np.float32)),
        negative_of=np.asarray(prediction.negative_of, np.int64),
        scale=_vector(prediction.scale),
        bias=_vector(prediction.bias),
        background=(prediction.background.numpy()[None] if prediction.background is not None
                    else np.zeros((0, *grid), np.float32)),
        rows=(prediction.rows.numpy() if prediction.rows is not None
              else np.zeros((0, *grid), np.float32)),
        row_of=np.asarray(prediction.row_of, np.int64),
        area_threshold=np.float64(math.nan if prediction.area_threshold is None
                                  else prediction.area_threshold),
    )  # fmt: skip


def _vector(value: torch.Tensor | None) -> np.ndarray:
    return np.zeros(0, np.float32) if value is None else value.numpy().astype(np.float32)


def _savez(path: str | os.PathLike[str] | BinaryIO, **arrays: np.ndarray) -> None:
    """`numpy.savez_compressed` with fixed entry dates, so that equal results give equal files
    (numpy stamps each entry with the current time)."""
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for name, value in arrays.items():
            info = zipfile.ZipInfo(f"{name}.npy", date_time=(1980, 1, 1, 0, 0, 0))
            info.compress_type = zipfile.ZIP_DEFLATED
            with archive.open(info, "w", force_zip64=True) as f:
                np.lib.format.write_array(f, np.asanyarray(value), allow_pickle=False)


def read_npz(
    path: str | os.PathLike[str], *, max_pixels: int | None = MAX_IMAGE_PIXELS
) -> NpzContent:
    """The content of a file written by `write_npz` (tensors on the CPU).

    Args:
        path: the file.
        max_pixels: the largest image (``H * W``) a file may describe: the pixel limit of
            images (`clsclip.checks.MAX_IMAGE_PIXELS`), None for none.

    Raises:
        ValueError: not a result file, another version, a missing entry, an entry of the wrong
            kind or over its bound, or geometry that cannot be (each named).
        OSError: the file cannot be read.
    """
    name = os.fspath(path)
    try:
        archive = zipfile.ZipFile(name)
    except zipfile.BadZipFile as e:
        raise ValueError(f"{name} is not an npz result file: {e}") from e
    with archive:
        headers = {
            _entry(info.filename): _header(archive, info, name) for info in archive.infolist()
        }
        missing = [e for e in _ENTRIES if e not in headers]
        if missing:
            raise ValueError(f"{name} is not a clsclip result file: missing entries {missing}")
        declared = sum(
            int(np.prod(shape, dtype=np.float64)) * dtype.itemsize
            for shape, dtype in headers.values()
        )
        if declared > MAX_ARRAY_BYTES:
            raise ValueError(
                f"{name} declares {declared / 2**20:.0f} MiB of arrays, over the limit of "
                f"{MAX_ARRAY_BYTES / 2**20:.0f} MiB for a result file; refused before reading"
            )
        read = _Reader(archive, headers, name)
        version = int(read.scalar("version", np.integer))
        if version != NPZ_VERSION:
            raise ValueError(f"{name} is npz version {version}, not {NPZ_VERSION}")
        names = read.json("class_names")
        if not isinstance(names, list) or not all(isinstance(n, str) for n in names) or not names:
            raise ValueError(f"{name}: 'class_names' must be a non-empty list of names")
        threshold = float(read.scalar("threshold", np.floating))
        if not 0.0 <= threshold <= 1.0:
            raise ValueError(f"{name}: 'threshold' must be in [0, 1], got {threshold}")
        fusion = str(read.array("fusion", (), np.str_)[()])
        if fusion not in FUSION_MODES:
            raise ValueError(f"{name}: unknown 'fusion' {fusion!r}; known: {list(FUSION_MODES)}")
        box = _letterbox(read.array("letterbox", (5,), np.integer), "letterbox", name, max_pixels)
        grid = read.shape("logits", 3, np.floating)
        if grid[0] != len(names) or not all(1 <= g <= MAX_IMAGE_SIZE for g in grid[1:]):
            raise ValueError(
                f"{name}: 'logits' must be K x h x w with K = {len(names)} classes and sides in "
                f"[1, {MAX_IMAGE_SIZE}], got {grid}"
            )
        logits = torch.from_numpy(read.array("logits", grid, np.floating).astype(np.float32))
        crops = _crops(read, box, len(names), name)
        boxes = read.json("boxes")
        if not isinstance(boxes, dict):
            raise ValueError(f"{name}: 'boxes' must map class names to boxes")
        try:
            boxes = {str(k): np.asarray(v, np.float32).reshape(-1, 4) for k, v in boxes.items()}
        except (TypeError, ValueError) as e:
            raise ValueError(f"{name}: 'boxes' must hold N x 4 boxes per class: {e}") from e
        extra = _optional(read, names, grid, name) if _OPTIONAL[0] in headers else {}
    thresholds, min_score = extra.pop("class_thresholds", {}), extra.pop("min_score", None)
    try:
        prediction = LowResPrediction(logits, box, crops, fusion, **extra)  # type: ignore[arg-type]
    except ValueError as e:
        raise ValueError(f"{name}: {e}") from None
    return NpzContent(names, prediction, threshold, boxes, thresholds, min_score)


def _optional(read: _Reader, names: list[str], grid: tuple[int, ...], name: str) -> dict[str, Any]:
    """The class-spec and calibration entries, checked."""
    missing = [e for e in _OPTIONAL if e not in read.headers]
    if missing:
        raise ValueError(f"{name} is not a clsclip result file: missing entries {missing}")
    thresholds = read.json("class_thresholds")
    if (
        not isinstance(thresholds, dict)
        or not set(thresholds) <= set(names)
        or not all(isinstance(v, (int, float)) and 0.0 <= v <= 1.0 for v in thresholds.values())
    ):
        raise ValueError(f"{name}: 'class_thresholds' must map class names to numbers in [0, 1]")
    min_score = float(read.scalar("min_score", np.floating))
    if not (math.isnan(min_score) or 0.0 <= min_score <= 1.0):
        raise ValueError(f"{name}: 'min_score' must be in [0, 1], got {min_score}")
    shape = read.shape("negatives", 3, np.floating)
    if shape[1:] != grid[1:] or shape[0] > MAX_CLASSES:
        raise ValueError(f"{name}: 'negatives' must be N x {grid[1]} x {grid[2]}, got {shape}")
    negatives = read.array("negatives", shape, np.floating).astype(np.float32)
    owners = read.array("negative_of", (shape[0],), np.integer)
    out: dict[str, Any] = {
        "class_thresholds": {str(k): float(v) for k, v in thresholds.items()},
        "min_score": None if math.isnan(min_score) else min_score,
        "negatives": torch.from_numpy(negatives) if shape[0] else None,
        "negative_of": tuple(int(k) for k in owners),
    }
    for entry in ("scale", "bias"):
        count = read.shape(entry, 1, np.floating)[0]
        if count not in (0, len(names)):
            raise ValueError(f"{name}: {entry!r} must hold 0 or {len(names)} values, got {count}")
        values = read.array(entry, (count,), np.floating).astype(np.float32)
        if not np.isfinite(values).all() or (entry == "scale" and (values <= 0).any()):
            raise ValueError(f"{name}: {entry!r} must be finite (and a scale positive)")
        out[entry] = torch.from_numpy(values) if count else None
    if "background" in read.headers:  # written since the training-free background floor
        shape = read.shape("background", 3, np.floating)
        if shape[1:] != grid[1:] or shape[0] > 1:
            raise ValueError(f"{name}: 'background' must be 0 or 1 x {grid[1]} x {grid[2]}, "
                             f"got {shape}")  # fmt: skip
        floor = read.array("background", shape, np.floating).astype(np.float32)
        out["background"] = torch.from_numpy(floor[0]) if shape[0] else None
    if "rows" in read.headers:
        shape = read.shape("rows", 3, np.floating)
        if shape[1:] != grid[1:] or shape[0] > MAX_CLASSES:
            raise ValueError(f"{name}: 'rows' must be R x {grid[1]} x {grid[2]}, got {shape}")
        rows = read.array("rows", shape, np.floating).astype(np.float32)
        out["rows"] = torch.from_numpy(rows) if shape[0] else None
        out["row_of"] = tuple(int(k) for k in read.array("row_of", (shape[0],), np.integer))
    if "area_threshold" in read.headers:
        area = float(read.scalar("area_threshold", np.floating))
        if not (math.isnan(area) or 0.0 <= area <= 1.0):
            raise ValueError(f"{name}: 'area_threshold' must be in [0, 1], got {area}")
        out["area_threshold"] = None if math.isnan(area) else area
    return out


def _entry(filename: str) -> str:
    return filename[: -len(".npy")] if filename.endswith(".npy") else filename


def _header(archive: zipfile.ZipFile, info: zipfile.ZipInfo, name: str) -> tuple[Any, ...]:
    """(shape, dtype) of one entry from its ``.npy`` header, without reading the data."""
    try:
        with archive.open(info) as f:
            version = np.lib.format.read_magic(f)
            if version == (1, 0):
                shape, _, dtype = np.lib.format.read_array_header_1_0(f)
            elif version == (2, 0):
                shape, _, dtype = np.lib.format.read_array_header_2_0(f)
            else:
                raise ValueError(f"unsupported .npy format version {version}")
    except (ValueError, OSError, zipfile.BadZipFile, EOFError) as e:
        raise ValueError(f"{name}: entry {info.filename!r} is not a numpy array: {e}") from e
    if dtype.hasobject:
        raise ValueError(f"{name}: entry {info.filename!r} holds Python objects; refused")
    return tuple(int(s) for s in shape), dtype


class _Reader:
    def __init__(self, archive: zipfile.ZipFile, headers: dict[str, Any], name: str) -> None:
        self.archive, self.headers, self.name = archive, headers, name

    def shape(self, entry: str, ndim: int, kind: type) -> tuple[int, ...]:
        shape, dtype = self.headers[entry]
        if len(shape) != ndim or not np.issubdtype(dtype, kind):
            raise ValueError(
                f"{self.name}: entry {entry!r} must be a {ndim}-d {kind.__name__} array, "
                f"got shape {shape} of {dtype}"
            )
        return tuple(shape)

    def array(self, entry: str, shape: tuple[int, ...], kind: type) -> np.ndarray:
        declared, dtype = self.headers[entry]
        if declared != shape or not np.issubdtype(dtype, kind):
            raise ValueError(
                f"{self.name}: entry {entry!r} must have shape {shape} of {kind.__name__}, got "
                f"{declared} of {dtype}"
            )
        if dtype.kind == "U" and dtype.itemsize > MAX_TEXT_BYTES:
            raise ValueError(f"{self.name}: entry {entry!r} is over {MAX_TEXT_BYTES} bytes")
        with self.archive.open(f"{entry}.npy") as f:
            return np.lib.format.read_array(f, allow_pickle=False)

    def scalar(self, entry: str, kind: type) -> Any:
        return self.array(entry, (), kind)[()]

    def json(self, entry: str) -> Any:
        text = str(self.array(entry, (), np.str_)[()])
        try:
            return json.loads(text)
        except json.JSONDecodeError as e:
            raise ValueError(f"{self.name}: entry {entry!r} is not valid JSON: {e}") from e


def _crops(read: _Reader, image: Letterbox, num_classes: int, name: str) -> tuple[CropLogits, ...]:
    count = read.shape("crop_class", 1, np.integer)[0]
    if count > MAX_CROPS:
        raise ValueError(f"{name}: {count} crops, over the limit of {MAX_CROPS}")
    classes = read.array("crop_class", (count,), np.integer)
    regions = read.array("crop_region", (count, 4), np.integer)
    boxes = read.array("crop_letterbox", (count, 5), np.integer)
    grid = read.shape("crop_logits", 3, np.floating)
    if grid[0] != count or not all(1 <= g <= MAX_IMAGE_SIZE for g in grid[1:]):
        raise ValueError(f"{name}: 'crop_logits' must be {count} x h x w, got {grid}")
    logits = read.array("crop_logits", grid, np.floating).astype(np.float32)
    height, width = image.original_size
    out = []
    for i in range(count):
        k = int(classes[i])
        if not 0 <= k < num_classes:
            raise ValueError(f"{name}: crop {i} is for class {k}, not in 0 .. {num_classes - 1}")
        x0, y0, x1, y1 = (int(v) for v in regions[i])
        if not (0 <= x0 < x1 <= width and 0 <= y0 < y1 <= height):
            raise ValueError(
                f"{name}: crop {i} region {[x0, y0, x1, y1]} is not inside the "
                f"{width} x {height} image"
            )
        region: Region = (x0, y0, x1, y1)
        crop_box = _letterbox(boxes[i], f"crop_letterbox[{i}]", name, None)
        if crop_box.original_size != (y1 - y0, x1 - x0):
            raise ValueError(f"{name}: crop {i}'s letterbox does not match its region")
        out.append(CropLogits(k, region, crop_box, torch.from_numpy(logits[i])))
    return tuple(out)


def _box(box: Letterbox) -> list[int]:
    """Five integers; an unpadded (``"short-side"``) input is written with input size 0."""
    return [*box.original_size, *box.resized_size, box.input_size if box.padded else 0]


def _letterbox(values: np.ndarray, field: str, name: str, max_pixels: int | None) -> Letterbox:
    h, w, rh, rw, size = (int(v) for v in values)
    padded = size != 0
    if not padded:  # the input is the resized image itself
        size = max(rh, rw)
    if min(h, w, rh, rw, size) < 1 or size > MAX_IMAGE_SIZE or rh > size or rw > size:
        raise ValueError(
            f"{name}: {field!r} {[h, w, rh, rw, size]} is not a letterbox (sizes >= 1, the "
            f"resized image inside an input of at most {MAX_IMAGE_SIZE} px)"
        )
    if max_pixels is not None and h * w > max_pixels:
        raise ValueError(
            f"{name}: {field!r} declares a {w} x {h} image ({h * w / 1e6:.1f} megapixels), over "
            f"the limit of {max_pixels / 1e6:.1f} (max_image_pixels)"
        )
    return Letterbox((h, w), (rh, rw), size, padded)


def write_npz_file(path: Path, **content: Any) -> None:
    """`write_npz` to a file name as given (numpy would append ``.npz`` to a bare name)."""
    with open(path, "wb") as f:
        write_npz(f, **content)

"""The result of segmenting one image: compact network output, full resolution on demand."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np
import torch
from PIL import Image

from clsclip.checks import check_threshold
from clsclip.geometry import Letterbox
from clsclip.results import formats
from clsclip.results.drawing import MaskImages, draw_boxes, overlay_label_map, palette
from clsclip.results.files import save_result
from clsclip.results.npz import read_npz, write_npz
from clsclip.results.prediction import CropLogits, LowResPrediction
from clsclip.results.presence import presence_scores
from clsclip.results.restore import FullResolution
from clsclip.results.thresholds import class_cutoffs, threshold_logit


class SegmentationResult:
    """Per-class predictions for one image, kept as the network produced them.

    The result holds each class's low-resolution logits (``K x h' x w'`` on the patch grid of
    the model input) and, for ClsCLIP+, each crop's, with the geometry that maps them back to
    the image: a few kB per class, whatever the image size. Full-resolution arrays are computed
    when asked for, on the device that holds the logits (the model's), a band of rows at a time:
    `label_map`, `mask` and `prob` never hold all K classes at full resolution, and `summary`,
    `save`, `overlay` and `mask_images` go class by class. Only `probs` and `masks` materialise
    ``K x H x W`` arrays.

    Build one with `Segmenter.segment`, or with `SegmentationResult.from_probs` from
    full-resolution probabilities.

    Args:
        class_names: the K queried names, in the order of the first axis of the logits.
        prediction: the network output and its geometry.
        threshold: probability above which a pixel is in a class's mask, in [0, 1], for the
            classes without a threshold of their own.
        image: the RGB input image, kept for drawing; may be None.
        boxes: per class, the proposal boxes (float32 ``N x 4``, ``x0, y0, x1, y1`` in pixels of
            the original image, exclusive end) that were zoomed into; classes without boxes are
            absent.
        class_thresholds: thresholds of some classes by name (class specs, the call, the
            model's calibration), over ``threshold``.
        min_score: classes whose presence score (`scores`) is below it get empty masks (None:
            keep every class).
    """

    def __init__(
        self,
        class_names: list[str],
        prediction: LowResPrediction,
        threshold: float = 0.5,
        image: Image.Image | None = None,
        boxes: dict[str, np.ndarray] | None = None,
        *,
        class_thresholds: Mapping[str, float] | None = None,
        min_score: float | None = None,
    ) -> None:
        if not isinstance(prediction, LowResPrediction):
            raise TypeError(
                "prediction must be a LowResPrediction; for full-resolution probabilities use "
                f"SegmentationResult.from_probs, got {type(prediction).__name__}"
            )
        if prediction.num_classes != len(class_names):
            raise ValueError(
                f"{prediction.num_classes} classes of logits but {len(class_names)} class names"
            )
        self.class_names = list(class_names)
        self.prediction = prediction
        self.threshold = check_threshold(threshold)
        self.image = image
        self.boxes = dict(boxes) if boxes is not None else {}
        own = dict(class_thresholds or {})
        unknown = sorted(set(own) - set(self.class_names))
        if unknown:
            raise ValueError(f"thresholds given for {unknown}, not among {self.class_names}")
        self._own = {name: check_threshold(value) for name, value in own.items()}
        self.min_score = None if min_score is None else check_threshold(min_score)
        self._label_pass: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None
        self._scores: np.ndarray | None = None
        self._dropped: list[int] | None = None

    @classmethod
    def from_probs(
        cls,
        class_names: list[str],
        probs: np.ndarray,
        threshold: float = 0.5,
        image: Image.Image | None = None,
        boxes: dict[str, np.ndarray] | None = None,
    ) -> SegmentationResult:
        """A result from full-resolution probabilities (float ``K x H x W`` in [0, 1]), e.g. of
        another model, with every method of a segmenter's result."""
        prediction = LowResPrediction.from_probs(np.asarray(probs), len(class_names))
        return cls(class_names, prediction, threshold, image, boxes)

    @property
    def low_res_logits(self) -> torch.Tensor:
        """float32 ``K x h' x w'`` logits of the whole image on the patch grid of the square model
        input (the letterbox padding included; see `letterbox`), on the model's device (for a
        result made by `from_probs`: the logits at the image's own size)."""
        return self.prediction.logits

    @property
    def letterbox(self) -> Letterbox:
        """Where the image sat inside the square model input."""
        return self.prediction.letterbox

    @property
    def crops(self) -> tuple[CropLogits, ...]:
        """ClsCLIP+ crop logits, each with its region and letterbox (empty without proposals)."""
        return self.prediction.crops

    @property
    def size(self) -> tuple[int, int]:
        """``(H, W)`` of the image in pixels."""
        return self.prediction.letterbox.original_size

    @property
    def thresholds(self) -> dict[str, float]:
        """Each class's mask threshold (its own, else `threshold`), by name."""
        return {name: self._own.get(name, self.threshold) for name in self.class_names}

    @property
    def scores(self) -> dict[str, float]:
        """Each class's presence score in [0, 1], by name: how sure the model is that the class
        is in the image at all. The largest probability of the class's 3 x 3-smoothed map on
        the patch grid, inside the image (crops included, negatives and calibration applied):
        one cell is not enough, a patch of them is. No network work; a few kB read."""
        if self._scores is None:
            self._scores = presence_scores(self.prediction)
        return {name: float(self._scores[k]) for k, name in enumerate(self.class_names)}

    def with_threshold(self, threshold: float | Mapping[str, float]) -> SegmentationResult:
        """The same network output with masks and label map at other thresholds (no network
        work is redone): one number for every class, or a mapping of some classes' thresholds
        (the others keep theirs)."""
        if isinstance(threshold, Mapping):
            own = {**self._own, **threshold}
            return self._copy(self.threshold, own)
        return self._copy(threshold, {})

    def _copy(
        self, threshold: float, own: Mapping[str, float], prediction: LowResPrediction | None = None
    ) -> SegmentationResult:
        return SegmentationResult(
            list(self.class_names), prediction if prediction is not None else self.prediction,
            threshold, self.image, dict(self.boxes), class_thresholds=own,
            min_score=self.min_score,
        )  # fmt: skip

    def to(self, device: str | torch.device) -> SegmentationResult:
        """The same result with its logits on ``device`` (e.g. ``"cpu"`` to free GPU memory);
        full-resolution work then runs there."""
        moved = self._copy(self.threshold, self._own, self.prediction.to(device))
        moved._label_pass, moved._scores = self._label_pass, self._scores
        return moved

    def effective_thresholds(self) -> list[float]:
        """The probability threshold of each class's mask, in class order: its threshold, or 1
        (an empty mask) for a class whose score is below ``min_score`` or that the area
        threshold drops (`LowResPrediction.area_threshold`)."""
        thresholds = self.thresholds
        out = [thresholds[name] for name in self.class_names]
        if self.prediction.area_threshold is not None:  # SC-CLIP's small classes: empty
            if self._dropped is None:
                self._dropped = self._full().area_dropped()
            out = [1.0 if k in self._dropped else t for k, t in enumerate(out)]
        if self.min_score is not None:
            scores = self.scores
            out = [1.0 if scores[n] < self.min_score else t
                   for n, t in zip(self.class_names, out, strict=True)]  # fmt: skip
        return out

    @property
    def label_map(self) -> np.ndarray:
        """int32 ``H x W``: 0 for background, k + 1 where class k is above the threshold and the
        most probable class (ties to the lower k). Computed once, in bands of rows."""
        return self._labels()[0]

    def prob(self, class_name: str) -> np.ndarray:
        """float32 ``H x W`` foreground probabilities of one class, in [0, 1]."""
        logits = self._full().class_logits(self._index(class_name))
        return logits.sigmoid_().cpu().numpy()

    def mask(self, class_name: str) -> np.ndarray:
        """bool ``H x W`` mask of one class (probability above the threshold)."""
        return self._mask_at(self._index(class_name))

    @property
    def probs(self) -> np.ndarray:
        """float32 ``K x H x W`` probabilities of every class. Materialises all K maps at full
        resolution (4 bytes per pixel and class): prefer `prob`, `mask` or `label_map`."""
        full = self._full()
        out = np.empty((len(self.class_names), *self.size), dtype=np.float32)
        for k in range(len(self.class_names)):
            out[k] = full.class_logits(k).sigmoid_().cpu().numpy()
        return out

    @property
    def masks(self) -> np.ndarray:
        """bool ``K x H x W`` masks of every class. Materialises all K masks at full resolution
        (1 byte per pixel and class): prefer `mask` or `label_map`."""
        full = self._full()
        out = np.empty((len(self.class_names), *self.size), dtype=bool)
        for k in range(len(self.class_names)):
            out[k] = self._mask_at(k, full)
        return out

    def mask_images(self) -> Mapping[str, Image.Image]:
        """One 8-bit grayscale PIL image per class (255 inside the mask, 0 outside), as a mapping
        from class name that computes each image when it is looked up."""
        return MaskImages(self.class_names, self.mask)

    def overlay(
        self, image: Image.Image | None = None, *, alpha: float = 0.5, legend: bool = True
    ) -> Image.Image:
        """The label map drawn in colour over the image (``image`` or the stored one), with each
        class's proposal boxes outlined in its colour."""
        image = image if image is not None else self.image
        if image is None:
            raise ValueError("this result holds no image; pass one: result.overlay(image)")
        out = overlay_label_map(image, self.label_map, self.class_names, alpha=alpha, legend=legend)
        colors = palette(len(self.class_names))
        for k, name in enumerate(self.class_names):
            if name in self.boxes and len(self.boxes[name]):
                out = draw_boxes(out, self.boxes[name].tolist(), tuple(colors[k].tolist()))
        return out

    def summary(self) -> dict[str, Any]:
        """A JSON-ready summary: size, threshold and per class its area, peak probability,
        presence score and threshold."""
        height, width = self.size
        _, areas, peaks = self._labels()
        scores, thresholds = self.scores, self.thresholds
        classes = [
            {
                "name": name,
                "label": k + 1,
                "area_pixels": int(areas[k]),
                "area_fraction": float(areas[k]) / (height * width),
                "max_prob": float(peaks[k]),
                "score": scores[name],
                "threshold": thresholds[name],
                "boxes": self.boxes[name].round(2).tolist() if name in self.boxes else [],
            }
            for k, name in enumerate(self.class_names)
        ]
        out = {"height": height, "width": width, "threshold": self.threshold, "classes": classes}
        if self.min_score is not None:
            out["min_score"] = self.min_score
        return out

    def save(self, out_dir: str | os.PathLike[str], stem: str) -> list[Path]:
        """Write one mask PNG per class, ``{stem}_overlay.png`` and ``{stem}.json`` into out_dir.

        Masks are ``{stem}_mask{k:02d}_{name}.png`` (k the class index, name made file-safe: runs
        of other characters than letters, digits, ``.`` and ``-`` become ``_``), 0/255 grayscale,
        computed and written one class at a time. The overlay is written only when the result
        holds its image. Each file is written under a temporary name and renamed, so an
        interruption leaves no truncated file under a final name. Returns the paths written.
        """
        overlay = self.overlay if self.image is not None else None
        return save_result(out_dir, stem, self.mask_images(), overlay, self.summary())

    def to_coco(self, *, image_id: int = 1, instances: bool = False) -> list[dict[str, Any]]:
        """COCO annotations (needs ``clsclip[coco]``): per class with a non-empty mask, one
        annotation with ``segmentation`` as compressed RLE (pycocotools), ``area``, ``bbox``
        (``x, y, w, h``), ``score`` (mean probability inside) and ``category_id`` k + 1; with
        ``instances``, one per 8-connected component. `clsclip.results.formats.coco_categories`
        gives the matching categories."""
        return formats.coco_annotations(
            self.prediction, self.effective_thresholds(), image_id=image_id, instances=instances
        )

    def to_supervision(self, *, instances: bool = False) -> Any:
        """A `supervision.Detections` (needs ``clsclip[supervision]``): one detection per class
        with a non-empty mask, or per 8-connected component with ``instances`` (needs
        ``clsclip[coco]`` for scipy), ``class_id`` k, ``confidence`` the mean probability
        inside, ``data["class_name"]``."""
        return formats.to_supervision(
            self.prediction, self.class_names, self.effective_thresholds(), instances=instances
        )

    def to_fiftyone(self, *, instances: bool = False) -> Any:
        """A FiftyOne label (needs ``clsclip[fiftyone]``): a ``Segmentation`` holding
        `label_map` (0 background, k + 1 class k: `mask_targets` names the values), or with
        ``instances`` a ``Detections`` with one masked detection per 8-connected component of
        each class (needs ``clsclip[coco]`` for scipy)."""
        if instances:
            return formats.fiftyone_detections(
                self.prediction, self.class_names, self.effective_thresholds()
            )
        return formats.fiftyone_segmentation(self.label_map, len(self.class_names))

    @property
    def mask_targets(self) -> dict[int, str]:
        """The values of `label_map` and `to_fiftyone`'s mask: ``{k + 1: class k}`` (FiftyOne's
        ``dataset.mask_targets[field]``)."""
        return formats.mask_targets(self.class_names)

    def to_label_studio(
        self,
        *,
        from_name: str = "label",
        to_name: str = "image",
        model_version: str = "clsclip",
        instances: bool = False,
    ) -> dict[str, Any]:
        """A Label Studio prediction (a task's ``predictions`` entry): one ``brushlabels``
        region (Label Studio's RLE) per class with a non-empty mask, or per 8-connected
        component with ``instances`` (needs ``clsclip[coco]`` for scipy), with its score;
        ``from_name`` / ``to_name`` name the config's ``BrushLabels`` and ``Image`` tags
        (`clsclip.results.label_studio.labeling_config` writes a matching config)."""
        return formats.label_studio_prediction(
            self.prediction, self.class_names, self.effective_thresholds(),
            from_name=from_name, to_name=to_name, model_version=model_version,
            instances=instances,
        )  # fmt: skip

    def save_npz(self, path: str | os.PathLike[str] | BinaryIO) -> None:
        """Write the network output (low-resolution logits, crops, geometry, names, threshold)
        to a compressed ``.npz``, to re-threshold or post-process later: see `load_npz`."""
        write_npz(
            path,
            class_names=self.class_names,
            prediction=self.prediction,
            threshold=self.threshold,
            boxes=self.boxes,
            class_thresholds=self._own,
            min_score=self.min_score,
        )

    @classmethod
    def load_npz(
        cls, path: str | os.PathLike[str], image: Image.Image | None = None
    ) -> SegmentationResult:
        """A result from a file written by `save_npz` (logits on the CPU). The file is checked
        before anything is allocated (see `clsclip.results.npz.read_npz`): `ValueError` naming
        the entry for a file that is not one, or declares more than the pixel limit of images."""
        content = read_npz(path)
        return cls(content.class_names, content.prediction, content.threshold, image,
                   content.boxes, class_thresholds=content.class_thresholds,
                   min_score=content.min_score)  # fmt: skip

    def __repr__(self) -> str:
        height, width = self.size
        own = f", class_thresholds={self._own}" if self._own else ""
        return (
            f"SegmentationResult(classes={self.class_names!r}, size=({height}, {width}), "
            f"threshold={self.threshold}{own}, crops={len(self.crops)}, "
            f"device={str(self.prediction.device)!r})"
        )

    def _full(self) -> FullResolution:
        return FullResolution(self.prediction)

    def _labels(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        if self._label_pass is None:
            cutoffs = class_cutoffs(self.effective_thresholds(), len(self.class_names))
            labels, areas, peaks = self._full().label_map(cutoffs)
            self._label_pass = (
                labels.cpu().numpy(),
                areas.cpu().numpy(),
                peaks.sigmoid().cpu().numpy(),
            )
        return self._label_pass

    def _mask_at(self, k: int, full: FullResolution | None = None) -> np.ndarray:
        if len(self.class_names) == 1 and self._label_pass is not None:
            return self._label_pass[0] == 1  # one class: its mask is the label map
        full = full if full is not None else self._full()
        cutoff = threshold_logit(self.effective_thresholds()[k])
        return full.class_mask(k, cutoff).cpu().numpy()

    def _index(self, class_name: str) -> int:
        try:
            return self.class_names.index(class_name)
        except ValueError:
            raise KeyError(
                f"{class_name!r} is not in this result; classes: {self.class_names}"
            ) from None

"""The result of segmenting one image: probabilities, masks and a label map per class."""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from clsclip.inputs import check_threshold
from clsclip.visualize import draw_boxes, overlay_label_map, palette


@dataclass
class SegmentationResult:
    """Per-class predictions for one image, at its original resolution.

    Attributes:
        class_names: the K queried names, in the order of the first axis below.
        probs: float32 ``K x H x W`` foreground probabilities in [0, 1].
        threshold: probability above which a pixel is in a class's mask.
        image: the RGB input image (``W x H``), kept for drawing; may be None.
        boxes: per class, the proposal boxes (float32 ``N x 4``, ``x0, y0, x1, y1`` in pixels,
            exclusive end) that were zoomed into (ClsCLIP+); classes without boxes are absent.
        masks: bool ``K x H x W``, probability above the threshold (computed).
        label_map: int32 ``H x W``, 0 for background, k + 1 where class k is above the threshold
            and the most probable class (computed).
    """

    class_names: list[str]
    probs: np.ndarray
    threshold: float = 0.5
    image: Image.Image | None = field(default=None, repr=False, compare=False)
    boxes: dict[str, np.ndarray] = field(default_factory=dict)
    masks: np.ndarray = field(init=False, repr=False, compare=False)
    label_map: np.ndarray = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if self.probs.ndim != 3 or self.probs.shape[0] != len(self.class_names):
            raise ValueError(
                f"probs must be K x H x W with K = {len(self.class_names)}, got {self.probs.shape}"
            )
        self.threshold = check_threshold(self.threshold)
        self.masks = self.probs > self.threshold
        self.label_map = _label_map(self.probs, self.masks)

    def with_threshold(self, threshold: float) -> SegmentationResult:
        """The same probabilities with masks and label map at another threshold."""
        return SegmentationResult(
            list(self.class_names), self.probs, threshold, self.image, dict(self.boxes)
        )

    @property
    def size(self) -> tuple[int, int]:
        """``(H, W)`` of the image in pixels."""
        return int(self.probs.shape[1]), int(self.probs.shape[2])

    def mask(self, class_name: str) -> np.ndarray:
        """bool ``H x W`` mask of one class; `KeyError` naming the classes if it is unknown."""
        return self.masks[self._index(class_name)]

    def mask_images(self) -> dict[str, Image.Image]:
        """One 8-bit grayscale PIL image per class: 255 inside the mask, 0 outside."""
        return {
            name: Image.fromarray(mask.astype(np.uint8) * 255, mode="L")
            for name, mask in zip(self.class_names, self.masks, strict=False)
        }

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
        """A JSON-ready summary: size, threshold and per-class area and peak probability."""
        height, width = self.size
        masks = self.masks
        classes = [
            {
                "name": name,
                "label": k + 1,
                "area_pixels": int(masks[k].sum()),
                "area_fraction": float(masks[k].mean()),
                "max_prob": float(self.probs[k].max()),
                "boxes": self.boxes[name].round(2).tolist() if name in self.boxes else [],
            }
            for k, name in enumerate(self.class_names)
        ]
        return {"height": height, "width": width, "threshold": self.threshold, "classes": classes}

    def save(self, out_dir: str | os.PathLike[str], stem: str) -> list[Path]:
        """Write one mask PNG per class, ``{stem}_overlay.png`` and ``{stem}.json`` into out_dir.

        Masks are ``{stem}_mask{k:02d}_{name}.png`` (k the class index, name made file-safe: runs
        of other characters than letters, digits, ``.`` and ``-`` become ``_``), 0/255 grayscale.
        The overlay is written only when the result holds its image. Returns the paths written.
        """
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        paths = []
        for k, (name, image) in enumerate(self.mask_images().items()):
            path = out / f"{stem}_mask{k:02d}_{_safe(name)}.png"
            image.save(path)
            paths.append(path)
        if self.image is not None:
            path = out / f"{stem}_overlay.png"
            self.overlay().save(path)
            paths.append(path)
        path = out / f"{stem}.json"
        path.write_text(json.dumps(self.summary(), indent=2) + "\n", encoding="utf-8")
        paths.append(path)
        return paths

    def _index(self, class_name: str) -> int:
        try:
            return self.class_names.index(class_name)
        except ValueError:
            raise KeyError(
                f"{class_name!r} is not in this result; classes: {self.class_names}"
            ) from None


def _label_map(probs: np.ndarray, masks: np.ndarray) -> np.ndarray:
    masked = np.where(masks, probs, np.float32(-1.0))
    best = masked.argmax(axis=0)
    above = np.take_along_axis(masked, best[None], axis=0)[0] >= 0
    return np.where(above, best + 1, 0).astype(np.int32)


def _safe(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9.-]+", "_", name).strip("_") or "class"

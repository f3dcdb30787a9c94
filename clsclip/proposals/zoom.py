"""ClsCLIP+ zoom-in: crop regions around proposal boxes, and the zoom settings (the way back,
paste and fusion on logits, is `clsclip.results.restore`)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

from clsclip.geometry import Region

FusionMode = Literal["max", "crops"]
FUSION_MODES: tuple[str, ...] = ("max", "crops")


@dataclass(frozen=True)
class ZoomSettings:
    """How boxes become crops and how crop predictions merge with the full image.

    Attributes:
        margin: context added on each side of a box, as a fraction of its width / height.
        min_size: least crop side in pixels (capped by the image); tiny boxes grow to it
            around their centre, shifted to stay inside the image.
        fusion: ``"max"``, the paper's pixel-wise OR (maximum of probabilities, the full image
            included); or ``"crops"``, where crops exist their prediction alone (the maximum over
            overlapping crops), elsewhere the full image's.
    """

    margin: float = 0.2
    min_size: int = 32
    fusion: FusionMode = "max"

    def __post_init__(self) -> None:
        if not isinstance(self.margin, (int, float)) or not 0.0 <= self.margin <= 10.0:
            raise ValueError(f"margin must be a number in [0, 10], got {self.margin!r}")
        if isinstance(self.min_size, bool) or not isinstance(self.min_size, int):
            raise TypeError(f"min_size must be an int, got {self.min_size!r}")
        if self.min_size < 1:
            raise ValueError(f"min_size must be >= 1, got {self.min_size}")
        if self.fusion not in FUSION_MODES:
            raise ValueError(f"unknown fusion {self.fusion!r}; choose one of {list(FUSION_MODES)}")


def crop_region(
    box: Sequence[float], image_size: tuple[int, int], settings: ZoomSettings
) -> Region | None:
    """The crop to zoom into for one proposal box.

    The box is clipped to the image, grown by ``margin`` on each side (clipped again), then
    held to ``min_size`` around its centre (shifted to stay inside), and rounded outwards to
    whole pixels. Returns None for a box wholly outside the image.
    """
    height, width = image_size
    x0, y0, x1, y1 = (float(v) for v in box)
    if x1 <= 0 or y1 <= 0 or x0 >= width or y0 >= height:
        return None
    x0, x1 = _grow(max(0.0, x0), min(float(width), x1), settings, width)
    y0, y1 = _grow(max(0.0, y0), min(float(height), y1), settings, height)
    return (
        max(0, math.floor(x0)),
        max(0, math.floor(y0)),
        min(width, math.ceil(x1)),
        min(height, math.ceil(y1)),
    )


def _grow(lo: float, hi: float, settings: ZoomSettings, limit: int) -> tuple[float, float]:
    extent = hi - lo
    lo, hi = (
        max(0.0, lo - settings.margin * extent),
        min(float(limit), hi + settings.margin * extent),
    )
    target = min(float(settings.min_size), float(limit))
    if hi - lo < target:
        centre = (lo + hi) / 2
        lo, hi = centre - target / 2, centre + target / 2
        if lo < 0:
            lo, hi = 0.0, target
        elif hi > limit:
            lo, hi = limit - target, float(limit)
    return lo, hi

"""What a region proposer returns, and the protocol every proposer follows."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

import numpy as np
from PIL import Image


@dataclass(frozen=True)
class Proposals:
    """Boxes found in one image.

    Attributes:
        boxes: float32 ``N x 4``, ``x0, y0, x1, y1`` in pixels of the original image, exclusive
            end (a box covering the image is ``0, 0, W, H``).
        scores: float32 ``N``, detector confidences (1.0 for given boxes).
        labels: N label names, as the detector calls them.
        labels_are_classes: the labels are queried class names (boxes given per class): a box
            serves exactly the class it is labelled with, with no synonym or CLIP matching.
        ids: int64 ``N`` track ids (a tracker's: one id per object across a video's frames), or
            None.
    """

    boxes: np.ndarray
    scores: np.ndarray
    labels: list[str] = field(default_factory=list)
    labels_are_classes: bool = False
    ids: np.ndarray | None = None

    def __post_init__(self) -> None:
        with np.errstate(over="ignore"):  # 1e39 becomes inf in float32: refused below
            boxes = np.asarray(self.boxes, dtype=np.float32).reshape(-1, 4)
            scores = np.asarray(self.scores, dtype=np.float32).reshape(-1)
        if not len(boxes) == len(scores) == len(self.labels):
            raise ValueError(
                f"proposals need one score and one label per box: {len(boxes)} boxes, "
                f"{len(scores)} scores, {len(self.labels)} labels"
            )
        finite = np.isfinite(boxes).all(axis=1) & np.isfinite(scores)
        if not finite.all():
            i = int(np.flatnonzero(~finite)[0])
            raise ValueError(
                f"proposal box {i} ({self.labels[i]!r}) is not finite in float32: box "
                f"{np.asarray(self.boxes).reshape(-1, 4)[i].tolist()}, score "
                f"{np.asarray(self.scores).reshape(-1)[i]!r}; boxes are x0, y0, x1, y1 in pixels"
            )
        if self.ids is not None:
            ids = np.asarray(self.ids, dtype=np.int64).reshape(-1)
            if len(ids) != len(boxes):
                raise ValueError(f"proposals need one track id per box: {len(boxes)} boxes, "
                                 f"{len(ids)} ids")  # fmt: skip
            object.__setattr__(self, "ids", ids)
        object.__setattr__(self, "boxes", boxes)
        object.__setattr__(self, "scores", scores)
        object.__setattr__(self, "labels", list(self.labels))

    def __len__(self) -> int:
        return len(self.labels)

    @classmethod
    def empty(cls) -> Proposals:
        return cls(np.zeros((0, 4), np.float32), np.zeros(0, np.float32), [])


@runtime_checkable
class Proposer(Protocol):
    """Anything that proposes labelled boxes for an image.

    ``class_names`` are the queried classes: open-vocabulary detectors look for them, closed-set
    detectors may ignore them.
    """

    def propose(self, image: Image.Image, class_names: Sequence[str]) -> Proposals: ...

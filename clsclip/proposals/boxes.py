"""Boxes given by the user (the paper's manual-box setting) as a proposer."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import numpy as np
from PIL import Image

from clsclip.proposals.base import Proposals

BoxesByClass = Mapping[str, Sequence[Sequence[float]]]


class BoxProposer:
    """Proposes fixed boxes per class name: ``{"dog": [[x0, y0, x1, y1], ...]}``.

    Boxes are in pixels of the original image, exclusive end. Each box is labelled with its class
    name, so it serves exactly that class.
    """

    def __init__(self, boxes: BoxesByClass) -> None:
        self.boxes = check_boxes_by_class(boxes)

    def check_classes(self, class_names: Sequence[str]) -> None:
        """`ValueError` naming the boxed classes that are not among ``class_names``."""
        unknown = sorted(set(self.boxes) - set(class_names))
        if unknown:
            raise ValueError(
                f"boxes given for {unknown}, which are not among the classes {list(class_names)}"
            )

    def propose(self, image: Image.Image, class_names: Sequence[str]) -> Proposals:
        self.check_classes(class_names)
        labels = [name for name, boxes in self.boxes.items() for _ in boxes]
        if not labels:
            return Proposals.empty()
        boxes = np.concatenate([b for b in self.boxes.values() if len(b)])
        return Proposals(boxes, np.ones(len(labels), np.float32), labels, labels_are_classes=True)


_FLOAT32_MAX = float(np.finfo(np.float32).max)


def check_boxes_by_class(boxes: object) -> dict[str, np.ndarray]:
    """Validate ``{class name: [[x0, y0, x1, y1], ...]}``; returns float32 ``N x 4`` arrays.

    Raises `TypeError` for a wrong structure and `ValueError` for a box that is not 4 finite
    numbers with ``x0 <= x1`` and ``y0 <= y1``.
    """
    if not isinstance(boxes, Mapping):
        raise TypeError(
            "boxes must map class names to lists of [x0, y0, x1, y1], e.g. "
            f'{{"dog": [[10, 20, 50, 80]]}}; got {type(boxes).__name__}'
        )
    out: dict[str, np.ndarray] = {}
    for name, items in boxes.items():
        if not isinstance(name, str):
            raise TypeError(f"box keys must be class names (str), got {name!r}")
        if isinstance(items, np.ndarray):
            items = items.tolist()
        if not isinstance(items, Sequence) or isinstance(items, str):
            raise TypeError(f"boxes for {name!r} must be a list of [x0, y0, x1, y1], got {items!r}")
        rows = []
        for box in items:
            values = list(box) if isinstance(box, (Sequence, np.ndarray)) else None
            if (
                values is None
                or len(values) != 4
                or not all(
                    isinstance(v, (int, float, np.number)) and math.isfinite(v) for v in values
                )
            ):
                raise ValueError(f"box {box!r} for {name!r} is not 4 finite numbers x0, y0, x1, y1")
            x0, y0, x1, y1 = (float(v) for v in values)
            if max(abs(x0), abs(y0), abs(x1), abs(y1)) > _FLOAT32_MAX:
                raise ValueError(f"box {box!r} for {name!r} does not fit in float32")
            if x1 < x0 or y1 < y0:
                raise ValueError(f"box {box!r} for {name!r} has x1 < x0 or y1 < y0")
            rows.append((x0, y0, x1, y1))
        out[name] = np.asarray(rows, dtype=np.float32).reshape(-1, 4)
    return out

"""Episodic IoU metrics of few-/zero-shot segmentation: per-class mIoU and FB-IoU.

Protocol as in PFENet / HSNet (METHOD.md): for each class, intersections and unions are summed
over all its episodes before dividing; mIoU averages the classes; FB-IoU averages the
foreground and background IoU, each summed over all episodes. Pixels labelled 255 are ignored.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np

from clsclip.datasets.folds import IGNORE


class EpisodicIoU:
    """Accumulates predictions of episodes.

    Args:
        class_ids: the classes evaluated (the fold's novel classes).
        empty_is_zero: a class with an empty union (no episodes, or nothing predicted nor
            true) has IoU 0 and counts in the mean, as in HSNet's evaluator; otherwise it is NaN
            and left out of the mean.
    """

    def __init__(self, class_ids: Iterable[int], *, empty_is_zero: bool = False) -> None:
        self.class_ids = list(class_ids)
        self.empty_is_zero = empty_is_zero
        self.intersection = {c: 0 for c in self.class_ids}
        self.union = {c: 0 for c in self.class_ids}
        self.fb_intersection = np.zeros(2, dtype=np.int64)
        self.fb_union = np.zeros(2, dtype=np.int64)
        self.episodes = 0

    def update(self, class_id: int, prediction: np.ndarray, target: np.ndarray) -> None:
        """Add one episode.

        Args:
            class_id: the episode's class.
            prediction: bool ``H x W`` foreground mask.
            target: uint8 ``H x W``: 1 foreground, 0 background, 255 ignored.
        """
        if class_id not in self.intersection:
            raise KeyError(f"class {class_id} is not evaluated here ({self.class_ids})")
        if prediction.shape != target.shape:
            raise ValueError(f"prediction {prediction.shape} and target {target.shape} differ")
        valid = target != IGNORE
        pred = prediction.astype(bool) & valid
        true = (target == 1) & valid
        self.intersection[class_id] += int((pred & true).sum())
        self.union[class_id] += int((pred | true).sum())
        for k, (p, t) in enumerate(((~pred & valid, ~true & valid), (pred, true))):
            self.fb_intersection[k] += int((p & t).sum())
            self.fb_union[k] += int((p | t).sum())
        self.episodes += 1

    def class_iou(self) -> dict[int, float]:
        """IoU per class (an empty union: 0 or NaN, see ``empty_is_zero``)."""
        empty = 0.0 if self.empty_is_zero else float("nan")
        return {
            c: self.intersection[c] / self.union[c] if self.union[c] else empty
            for c in self.class_ids
        }

    def miou(self) -> float:
        """Mean IoU over the classes (those with a non-empty union unless ``empty_is_zero``)."""
        values = [v for v in self.class_iou().values() if not np.isnan(v)]
        return float(np.mean(values)) if values else float("nan")

    def fb_iou(self) -> float:
        """Mean of background and foreground IoU over all episodes."""
        ious = self.fb_intersection / np.maximum(self.fb_union, 1)
        return float(ious.mean())


class DatasetIoU:
    """Whole-dataset IoU as mmseg's ``IoUMetric`` computes it (the training-free methods'
    tables): per class, intersections and unions summed over every image before dividing;
    pixels whose label is ``ignore_index`` are left out; predictions outside 0 .. C-1 (no
    class) count in no class's prediction but still in the label's union. mIoU is the mean over
    the classes with a non-empty union (mmseg's ``nanmean``); aAcc the share of labelled pixels
    predicted right.

    Args:
        num_classes: C.
        ignore_index: the label value left out.
    """

    def __init__(self, num_classes: int, *, ignore_index: int = IGNORE) -> None:
        self.num_classes = num_classes
        self.ignore_index = ignore_index
        self.intersection = np.zeros(num_classes, dtype=np.int64)
        self.predicted = np.zeros(num_classes, dtype=np.int64)
        self.labelled = np.zeros(num_classes, dtype=np.int64)
        self.images = 0

    def update(self, prediction: np.ndarray, label: np.ndarray) -> None:
        """Add one image: integer ``H x W`` class indices (any value outside 0 .. C-1: none)
        and its ``H x W`` label map."""
        if prediction.shape != label.shape:
            raise ValueError(f"prediction {prediction.shape} and label {label.shape} differ")
        valid = label != self.ignore_index
        pred = prediction[valid].astype(np.int64)
        true = label[valid].astype(np.int64)
        count = self.num_classes
        inside = (pred >= 0) & (pred < count)
        hit = inside & (pred == true)
        self.intersection += np.bincount(pred[hit], minlength=count)[:count]
        self.predicted += np.bincount(pred[inside], minlength=count)[:count]
        known = (true >= 0) & (true < count)
        self.labelled += np.bincount(true[known], minlength=count)[:count]
        self.images += 1

    def class_iou(self) -> np.ndarray:
        """float64 ``C``: IoU per class, NaN where the union is empty."""
        union = self.predicted + self.labelled - self.intersection
        with np.errstate(divide="ignore", invalid="ignore"):
            return np.where(union > 0, self.intersection / np.maximum(union, 1), np.nan)

    def miou(self) -> float:
        values = self.class_iou()
        return float(np.nanmean(values)) if np.isfinite(values).any() else float("nan")

    def accuracy(self) -> float:
        """aAcc: correct labelled pixels over labelled pixels."""
        total = int(self.labelled.sum())
        return float(self.intersection.sum() / total) if total else float("nan")

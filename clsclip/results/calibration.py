"""Calibration from a labelled set: per class, a scale and bias on the logits (Platt scaling, so
that ``prob`` is calibrated) and the threshold that maximises IoU or F1.

Pixels are counted, never kept: each class's full-resolution logits go into a histogram of
`EDGES` (0.02 wide over [-40, 40]), once for the pixels of the class and once for the others.
The fit and the threshold search read the histograms only, so the set's size costs no memory,
and the threshold chosen is exactly the one a search over all pixels at the same candidate
cuts (the edges) would choose.
"""

from __future__ import annotations

import contextlib
import logging
import math
import warnings
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from clsclip.results.prediction import LowResPrediction
from clsclip.results.restore import FullResolution

logger = logging.getLogger(__name__)

EDGES = torch.linspace(-40.0, 40.0, 4001, dtype=torch.float64)
"""The candidate cuts in logit space; bin i holds logits in ``[EDGES[i - 1], EDGES[i])``, bin 0
those below (``-inf`` from negatives included), the last bin those above."""
METRICS = ("iou", "f1")
THRESHOLD_LOGIT_BOUND = 30.0
"""Fitted thresholds are stored as probabilities whose logit is within +-30: a probability that
close to 0 or 1 is still exact enough (double precision) to give back its logit cut."""
ECE_BINS = 15


def check_metric(metric: str) -> str:
    """``metric`` if it is one of `METRICS`; `ValueError` naming it otherwise."""
    if metric not in METRICS:
        raise ValueError(f"unknown metric {metric!r}; choose one of {list(METRICS)}")
    return metric


@dataclass
class PixelCounts:
    """Histograms of one labelled set's raw logits, per class.

    Attributes:
        names: the K classes (label ``k + 1`` in the label maps).
        positives, negatives: int64 ``K x (len(EDGES) + 1)`` counts of the pixels of the class
            and of the other labelled pixels, by logit bin.
        per_image: with ``keep_images``, each image's ``(positives, negatives)`` (for F1, a
            per-image mean).
        images: images counted.
    """

    names: list[str]
    keep_images: bool = False
    positives: np.ndarray = field(init=False)
    negatives: np.ndarray = field(init=False)
    per_image: list[tuple[np.ndarray, np.ndarray]] = field(default_factory=list)
    images: int = 0

    def __post_init__(self) -> None:
        shape = (len(self.names), len(EDGES) + 1)
        self.positives = np.zeros(shape, dtype=np.int64)
        self.negatives = np.zeros(shape, dtype=np.int64)

    def add(self, prediction: LowResPrediction, labels: np.ndarray, ignore_index: int) -> None:
        """Count one image: ``prediction`` uncalibrated, ``labels`` its ``H x W`` label map
        (0 background, ``k + 1`` class k, ``ignore_index`` not counted)."""
        full = FullResolution(prediction)
        if labels.shape != (full.height, full.width):
            raise ValueError(
                f"the label map is {labels.shape[1]} x {labels.shape[0]}, the image "
                f"{full.width} x {full.height}"
            )
        edges = EDGES.to(prediction.device, torch.float32)
        target = torch.as_tensor(labels.astype(np.int64), device=prediction.device)
        count = len(self.names)
        bins = len(EDGES) + 1
        pos = torch.zeros(count, bins, dtype=torch.int64, device=prediction.device)
        neg = torch.zeros_like(pos)
        classes = list(range(count))
        for start, stop in full.row_bands(count):
            logits = full.band(classes, start, stop)
            rows = target[start:stop]
            valid = rows != ignore_index
            index = torch.bucketize(logits, edges, right=True)
            for k in classes:
                mine = rows == k + 1
                pos[k] += torch.bincount(index[k][mine & valid], minlength=bins)
                neg[k] += torch.bincount(index[k][~mine & valid], minlength=bins)
        p, n = pos.cpu().numpy(), neg.cpu().numpy()
        self.positives += p
        self.negatives += n
        if self.keep_images:
            self.per_image.append((p.astype(np.int32), n.astype(np.int32)))
        self.images += 1


@dataclass(frozen=True)
class ClassFit:
    """One class's calibration: ``scale * logit + bias``, its threshold (a calibrated
    probability), and the figures before and after on the calibration set."""

    scale: float
    bias: float
    threshold: float
    pixels: int
    ece_before: float
    ece_after: float
    score_before: float  # the metric at probability 0.5, uncalibrated
    score_after: float  # the metric at the chosen threshold, calibrated


def fit_platt(positives: np.ndarray, negatives: np.ndarray) -> tuple[float, float]:
    """``(scale, bias)`` minimising the log loss of ``sigmoid(scale * z + bias)`` on the counted
    pixels (Newton's method on the bin centres; a tiny ridge keeps separable data finite)."""
    centre = 0.5 * (EDGES[:-1] + EDGES[1:]).numpy()
    pos = positives[1:-1].astype(np.float64)
    neg = negatives[1:-1].astype(np.float64)
    total = pos.sum() + neg.sum()
    if total == 0:
        return 1.0, 0.0
    pos, neg = pos / total, neg / total
    used = (pos + neg) > 0
    x, pos, neg = centre[used], pos[used], neg[used]
    ridge = 1e-8

    def loss(a: float, b: float) -> float:
        s = a * x + b
        return float((pos * np.logaddexp(0, -s) + neg * np.logaddexp(0, s)).sum()) + ridge * a * a

    a, b = 1.0, 0.0
    current = loss(a, b)
    for _ in range(200):
        s = a * x + b
        p = 0.5 * (1 + np.tanh(0.5 * s))  # sigmoid without overflow
        g = (pos + neg) * p - pos
        h = (pos + neg) * p * (1 - p)
        grad = np.array([(g * x).sum() + 2 * ridge * a, g.sum()])
        hess = np.array([[(h * x * x).sum() + 2 * ridge, (h * x).sum()], [(h * x).sum(), h.sum()]])
        try:
            step = np.linalg.solve(hess + 1e-12 * np.eye(2), grad)
        except np.linalg.LinAlgError:
            step = grad
        t = 1.0
        while t > 1e-8:
            na, nb = a - t * step[0], b - t * step[1]
            new = loss(na, nb)
            if new <= current:
                break
            t *= 0.5
        else:
            break
        converged = abs(current - new) < 1e-15 and abs(na - a) + abs(nb - b) < 1e-9
        a, b, current = na, nb, new
        if converged:
            break
    return float(a), float(b)


def _iou_cuts(positives: np.ndarray, negatives: np.ndarray) -> np.ndarray:
    """The dataset IoU of the mask ``logit >= EDGES[j]`` at each cut j."""
    tp, fp = _above(positives), _above(negatives)
    denominator = positives.sum() + fp  # tp + fp + fn
    return np.where(denominator > 0, tp / np.maximum(denominator, 1), 1.0)


def _above(counts: np.ndarray) -> np.ndarray:
    """Pixels with logit >= ``EDGES[j]``, for each j: the counts of bins ``j + 1`` and up."""
    return np.cumsum(counts[::-1])[::-1][1:].astype(np.float64)


def _f1_cuts(positives: np.ndarray, negatives: np.ndarray) -> np.ndarray:
    """One image's F1 at each cut; NaN where the class is neither there nor predicted."""
    tp, fp = _above(positives), _above(negatives)
    fn = positives.sum() - tp
    denominator = 2 * tp + fp + fn
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(denominator > 0, 2 * tp / np.maximum(denominator, 1), np.nan)


def best_cut(
    positives: np.ndarray, negatives: np.ndarray, metric: str,
    per_image: Sequence[tuple[np.ndarray, np.ndarray]] = (),
) -> tuple[int, float]:  # fmt: skip
    """The edge index with the best metric (the middle of the first run of equals) and its
    value. IoU is
    the dataset's (all images' pixels counted together, as mIoU is); F1 is the mean of the
    images' F1 over the images where the class is or is predicted."""
    check_metric(metric)
    if metric == "f1":
        with np.errstate(invalid="ignore"), _quiet_nanmean():
            scores = np.nanmean([_f1_cuts(p, n) for p, n in per_image], axis=0)
        scores = np.nan_to_num(scores, nan=1.0)
    else:
        scores = _iou_cuts(positives, negatives)
    j = _middle_of_best(scores)
    return j, float(scores[j])


def _middle_of_best(scores: np.ndarray) -> int:
    """The middle of the first run of cuts that reach the best score: on separable data every
    cut between the classes' logits is best, and the middle one keeps the widest margin on both
    sides (the first would sit at the edge of the negatives)."""
    best = float(np.max(scores))
    first = int(np.argmax(scores))
    last = first
    while last + 1 < len(scores) and scores[last + 1] >= best - 1e-12:
        last += 1
    return (first + last) // 2


@contextlib.contextmanager
def _quiet_nanmean() -> Iterator[None]:
    """Silences numpy's warning for cuts where no image counts (their mean is NaN)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        yield


def score_at(
    positives: np.ndarray, negatives: np.ndarray, metric: str, cut_logit: float,
    per_image: Sequence[tuple[np.ndarray, np.ndarray]] = (),
) -> float:  # fmt: skip
    """The metric of the mask ``logit >= cut_logit`` (rounded to the nearest edge)."""
    j = int(np.clip(np.searchsorted(EDGES.numpy(), cut_logit), 0, len(EDGES) - 1))
    if metric == "f1":
        with np.errstate(invalid="ignore"), _quiet_nanmean():
            value = np.nanmean([_f1_cuts(p, n)[j] for p, n in per_image])
        return 1.0 if math.isnan(value) else float(value)
    return float(_iou_cuts(positives, negatives)[j])


def expected_calibration_error(
    positives: np.ndarray, negatives: np.ndarray, scale: float = 1.0, bias: float = 0.0
) -> float:
    """ECE of the pixel probabilities ``sigmoid(scale * logit + bias)`` (15 equal-width bins),
    from the histograms (each bin's pixels at its centre)."""
    edges = EDGES.numpy()
    values = np.concatenate([[edges[0] - 1], 0.5 * (edges[:-1] + edges[1:]), [edges[-1]]])
    prob = 1 / (1 + np.exp(-(scale * values + bias)))
    prob[0] = 0.0  # below the first edge: -inf (a negative prompt won) or nearly so
    total = positives + negatives
    n = total.sum()
    if n == 0:
        return 0.0
    which = np.minimum((prob * ECE_BINS).astype(int), ECE_BINS - 1)
    count = np.bincount(which, weights=total, minlength=ECE_BINS)
    confidence = np.bincount(which, weights=total * prob, minlength=ECE_BINS)
    hits = np.bincount(which, weights=positives, minlength=ECE_BINS)
    used = count > 0
    gap = np.abs(confidence[used] - hits[used]) / count[used]
    return float((count[used] / n * gap).sum())


def _sigmoid(x: float) -> float:
    return 1 / (1 + math.exp(-x)) if x >= 0 else math.exp(x) / (1 + math.exp(x))


def fit_class(
    positives: np.ndarray, negatives: np.ndarray, metric: str,
    per_image: Sequence[tuple[np.ndarray, np.ndarray]] = (),
    calibration: tuple[float, float] | None = None,
) -> ClassFit:  # fmt: skip
    """Fit one class (or the pooled classes): its scale and bias (``calibration`` when given),
    then the cut of the best metric, as a calibrated probability."""
    scale, bias = calibration if calibration is not None else fit_platt(positives, negatives)
    j, after = best_cut(positives, negatives, metric, per_image)
    edge = float(EDGES[j])
    # A probability within 1e-13 of 0 or 1 still names its logit to 1e-3 in double precision.
    cut = min(max(scale * edge + bias, -THRESHOLD_LOGIT_BOUND), THRESHOLD_LOGIT_BOUND)
    threshold = _sigmoid(cut)
    return ClassFit(
        scale=scale,
        bias=bias,
        threshold=threshold,
        pixels=int(positives.sum()),
        ece_before=expected_calibration_error(positives, negatives),
        ece_after=expected_calibration_error(positives, negatives, scale, bias),
        score_before=score_at(positives, negatives, metric, 0.0, per_image),
        score_after=after,
    )


@dataclass(frozen=True)
class CalibrationFit:
    """What `fit_calibration` found: per class seen in the set, the default (all classes'
    pixels pooled) for the others, the classes the set never shows, and those it shows but
    whose logits could not be calibrated (with the reason; they keep the default scale and
    bias, and get their own threshold)."""

    classes: dict[str, ClassFit]
    default: ClassFit
    absent: list[str]
    images: int
    metric: str
    uncalibrated: dict[str, str] = field(default_factory=dict)

    def config_fields(self) -> dict[str, Any]:
        """The model config's ``threshold``, ``class_thresholds`` and ``calibration``."""

        def figures(fit: ClassFit) -> dict[str, Any]:
            return {"pixels": fit.pixels, "ece_before": round(fit.ece_before, 5),
                    "ece_after": round(fit.ece_after, 5),
                    f"{self.metric}_at_0.5": round(fit.score_before, 5),
                    f"{self.metric}_calibrated": round(fit.score_after, 5)}  # fmt: skip

        return {
            "threshold": self.default.threshold,
            "class_thresholds": {n: f.threshold for n, f in self.classes.items()},
            "calibration": {
                "classes": {n: {"scale": f.scale, "bias": f.bias} for n, f in self.classes.items()},
                "default": {"scale": self.default.scale, "bias": self.default.bias},
                "set": {"images": self.images, "metric": self.metric, "absent": self.absent,
                        "uncalibrated": dict(self.uncalibrated)},
                "figures": {"all": figures(self.default),
                            **{n: figures(f) for n, f in self.classes.items()}},
            },
        }  # fmt: skip


def fit_calibration(counts: PixelCounts, metric: str = "iou") -> CalibrationFit:
    """Fit every class the set shows, and the pooled default for the others.

    A class the set never shows keeps the default, and is named (logged, and in ``absent``).
    A class the set shows but whose scale cannot be fitted keeps the default scale and bias
    and gets its own threshold, named in ``uncalibrated`` with the reason: every labelled
    pixel is the class (no pixel to tell it from: the log loss drives the scale to 0 and the
    threshold to a probability of 1, an empty mask), or its logits rank its pixels below the
    others (a scale <= 0).
    """
    check_metric(metric)
    if counts.images == 0:
        raise ValueError("the calibration set is empty")
    if metric == "f1" and not counts.keep_images:
        raise ValueError("F1 is a mean over images: count with keep_images=True")
    seen = [k for k in range(len(counts.names)) if counts.positives[k].sum() > 0]
    if not seen:
        raise ValueError(
            f"the calibration set shows none of the classes {counts.names}: nothing to fit"
        )
    pooled_images = [(p[seen].sum(0), n[seen].sum(0)) for p, n in counts.per_image]
    pooled = (counts.positives[seen].sum(0), counts.negatives[seen].sum(0))
    identity = (1.0, 0.0) if pooled[1].sum() == 0 else None  # nothing but the classes: as is
    default = fit_class(*pooled, metric, pooled_images, calibration=identity)
    if default.scale <= 0:
        default = fit_class(*pooled, metric, pooled_images, calibration=(1.0, 0.0))
    fits: dict[str, ClassFit] = {}
    uncalibrated: dict[str, str] = {}
    for k in seen:
        name = counts.names[k]
        images = [(p[k], n[k]) for p, n in counts.per_image]
        positives, negatives = counts.positives[k], counts.negatives[k]
        fit = None
        if negatives.sum() == 0:
            uncalibrated[name] = "every labelled pixel of the set is this class"
        else:
            fit = fit_class(positives, negatives, metric, images)
            if fit.scale <= 0:
                uncalibrated[name] = "its logits do not rank its pixels above the others"
                fit = None
        if fit is None:
            fit = fit_class(positives, negatives, metric, images,
                            calibration=(default.scale, default.bias))  # fmt: skip
        fits[name] = fit
    absent = [name for k, name in enumerate(counts.names) if k not in seen]
    for name, reason in uncalibrated.items():
        logger.warning("class %r: %s; it keeps the default scale and bias, with its own "
                       "threshold", name, reason)  # fmt: skip
    if absent:
        logger.warning("the calibration set never shows %s: they keep the default calibration "
                       "and threshold", absent)  # fmt: skip
    return CalibrationFit(fits, default, absent, counts.images, metric, uncalibrated)

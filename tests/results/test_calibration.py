"""Calibration from histograms: Platt scaling recovers a known temperature and bias, the
threshold search equals a brute-force search over the same pixels, ECE falls."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from clsclip.geometry import Letterbox
from clsclip.results.calibration import (
    EDGES,
    PixelCounts,
    best_cut,
    expected_calibration_error,
    fit_calibration,
    fit_platt,
)
from clsclip.results.prediction import LowResPrediction


def _box(height: int, width: int) -> Letterbox:
    """Logits already at the (square) image's size: full resolution is the grid itself."""
    assert height == width
    return Letterbox(original_size=(height, width), resized_size=(height, width), input_size=height)


def _counts_of(logits: np.ndarray, labels: np.ndarray, names: list[str], **kw) -> PixelCounts:
    counts = PixelCounts(names, **kw)
    for z, y in zip(logits, labels, strict=True):  # each item: K x H x W logits, H x W labels
        counts.add(LowResPrediction(torch.from_numpy(z), _box(*y.shape)), y, 255)
    return counts


def _synthetic(scale: float, bias: float, images: int = 4, size: int = 200, seed: int = 0):
    """Logits z ~ N(0, 3) and labels drawn with P(class) = sigmoid(scale * z + bias)."""
    rng = np.random.default_rng(seed)
    z = rng.normal(0, 3, (images, 1, size, size)).astype(np.float32)
    p = 1 / (1 + np.exp(-(scale * z + bias)))
    y = (rng.random(p.shape) < p).astype(np.uint8)[:, 0]
    return z, y


def test_the_histograms_count_each_pixel_once_at_full_resolution() -> None:
    z, y = _synthetic(1.0, 0.0, images=2, size=50)
    y[0, :5] = 255  # ignored
    counts = _counts_of(z, y, ["a"])
    assert counts.images == 2
    assert counts.positives.sum() == (y == 1).sum() and counts.negatives.sum() == (y == 0).sum()
    index = np.searchsorted(EDGES.numpy().astype(np.float32), z[:, 0][y == 1], side="right")
    np.testing.assert_array_equal(
        counts.positives[0], np.bincount(index.ravel(), minlength=len(EDGES) + 1)
    )


def test_platt_scaling_recovers_a_known_temperature_and_bias() -> None:
    z, y = _synthetic(0.5, -1.0, images=4, size=250)  # 250,000 pixels
    counts = _counts_of(z, y, ["a"])
    scale, bias = fit_platt(counts.positives[0], counts.negatives[0])
    assert scale == pytest.approx(0.5, abs=0.02) and bias == pytest.approx(-1.0, abs=0.03)
    # a logit model that is already calibrated stays as it is
    z, y = _synthetic(1.0, 0.0, images=4, size=250, seed=1)
    counts = _counts_of(z, y, ["a"])
    scale, bias = fit_platt(counts.positives[0], counts.negatives[0])
    assert scale == pytest.approx(1.0, abs=0.03) and bias == pytest.approx(0.0, abs=0.03)


def test_the_chosen_threshold_equals_a_brute_force_search() -> None:
    z, y = _synthetic(0.8, -2.0, images=3, size=120, seed=2)
    counts = _counts_of(z, y, ["a"], keep_images=True)
    edges = EDGES.numpy().astype(np.float32)
    pixels, truth = z[:, 0].ravel(), y.ravel() == 1
    candidates = range(1500, 2600)  # around where the logits are (the rest: all or nothing)
    iou = []
    for j in candidates:
        mask = pixels >= edges[j]
        iou.append((mask & truth).sum() / (mask | truth).sum())
    j, value = best_cut(counts.positives[0], counts.negatives[0], "iou")
    assert value == pytest.approx(max(iou), abs=0) and iou[j - 1500] == max(iou)
    f1 = []
    for j in candidates:
        per_image = []
        for image in range(3):
            mask, gt = z[image, 0] >= edges[j], y[image] == 1
            per_image.append(2 * (mask & gt).sum() / (mask.sum() + gt.sum()))
        f1.append(np.mean(per_image))
    per = [(p[0], n[0]) for p, n in counts.per_image]
    j, value = best_cut(counts.positives[0], counts.negatives[0], "f1", per)
    assert value == pytest.approx(max(f1), abs=1e-12)
    assert f1[j - 1500] == pytest.approx(max(f1), abs=1e-12)


def test_fit_lowers_the_calibration_error_and_names_absent_classes(caplog) -> None:
    z, y = _synthetic(0.4, 1.5, images=3, size=150, seed=3)
    two = np.concatenate([z, z - 50], axis=1)  # a second class, never in the labels
    counts = _counts_of(two, y, ["shown", "never"])
    fit = fit_calibration(counts)
    assert fit.absent == ["never"] and set(fit.classes) == {"shown"}
    assert "never shows ['never']" in caplog.text
    shown = fit.classes["shown"]
    assert shown.ece_before > 0.1 and shown.ece_after < 0.01
    assert shown.ece_after == pytest.approx(
        expected_calibration_error(counts.positives[0], counts.negatives[0], shown.scale,
                                   shown.bias))  # fmt: skip
    assert shown.score_after >= shown.score_before
    fields = fit.config_fields()
    assert set(fields["class_thresholds"]) == {"shown"}
    assert fields["calibration"]["set"] == {
        "images": 3,
        "metric": "iou",
        "absent": ["never"],
        "uncalibrated": {},
    }
    assert fields["calibration"]["default"] == {"scale": fit.default.scale,
                                                "bias": fit.default.bias}  # fmt: skip


def test_fit_refuses_empty_sets_and_sets_without_any_class() -> None:
    with pytest.raises(ValueError, match="the calibration set is empty"):
        fit_calibration(PixelCounts(["a"]))
    z, _ = _synthetic(1.0, 0.0, images=1, size=20)
    counts = _counts_of(z, np.zeros((1, 20, 20), np.uint8), ["a"])
    with pytest.raises(ValueError, match=r"shows none of the classes \['a'\]"):
        fit_calibration(counts)
    with pytest.raises(ValueError, match="unknown metric 'dice'"):
        fit_calibration(counts, "dice")


def test_on_separable_logits_the_cut_is_in_the_middle_of_the_gap() -> None:
    """Every cut between the negatives' logits (<= -2) and the positives' (>= 4) is best; the
    chosen one keeps the margin on both sides, not the edge of the negatives."""
    rng = np.random.default_rng(4)
    z = np.where(rng.random((1, 1, 60, 60)) < 0.4, rng.uniform(4, 9, (1, 1, 60, 60)),
                 rng.uniform(-9, -2, (1, 1, 60, 60))).astype(np.float32)  # fmt: skip
    y = (z[:, 0] > 0).astype(np.uint8)
    counts = _counts_of(z, y, ["a"])
    j, value = best_cut(counts.positives[0], counts.negatives[0], "iou")
    assert value == 1.0
    low, high = float(z[z < 0].max()), float(z[z > 0].min())
    assert float(EDGES[j]) == pytest.approx((low + high) / 2, abs=0.03)


def test_a_class_on_every_labelled_pixel_keeps_a_mask() -> None:
    """Labels where the rest is 255: no pixel tells the class from anything, so its scale
    cannot be fitted (the log loss drives it to 0 and the threshold to a probability of 1, an
    empty mask). It keeps the default scale and bias (here: none, as nothing is fitted), gets
    its own threshold, and is named as uncalibrated, not as absent."""
    z, _ = _synthetic(1.0, 0.0, images=2, size=40, seed=5)
    y = np.full((2, 40, 40), 255, np.uint8)
    y[:, :20] = 1  # every labelled pixel
    counts = _counts_of(np.concatenate([z, z - 5], axis=1), y, ["everywhere", "never"])
    fit = fit_calibration(counts)
    assert fit.absent == ["never"]
    assert "every labelled pixel" in fit.uncalibrated["everywhere"]
    everywhere = fit.classes["everywhere"]
    assert (everywhere.scale, everywhere.bias) == (fit.default.scale, fit.default.bias) == (1, 0)
    assert 1e-13 < everywhere.threshold < 1 - 1e-13
    cut = np.log(everywhere.threshold / (1 - everywhere.threshold))
    assert cut <= float(z[:, 0][y == 1].min())  # the mask keeps every pixel of the class
    fields = fit.config_fields()
    assert fields["calibration"]["set"]["uncalibrated"] == fit.uncalibrated


def test_a_class_whose_logits_rank_it_backwards_is_named_so(caplog) -> None:
    z, y = _synthetic(1.0, 0.0, images=2, size=60, seed=6)
    labels = np.where(y == 1, 1, 2).astype(np.uint8)  # "backwards" is where "right" is not
    counts = _counts_of(np.concatenate([z, z], axis=1), labels, ["right", "backwards"])
    fit = fit_calibration(counts)
    assert fit.absent == [] and set(fit.classes) == {"right", "backwards"}
    assert "do not rank" in fit.uncalibrated["backwards"]
    assert "right" not in fit.uncalibrated
    backwards = fit.classes["backwards"]
    assert (backwards.scale, backwards.bias) == (fit.default.scale, fit.default.bias)
    assert "'backwards': its logits do not rank" in caplog.text

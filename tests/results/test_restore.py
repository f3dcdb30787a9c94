"""The way back from low-resolution logits to original pixels, against the plain reference."""

import math

import numpy as np
import pytest
import torch

from clsclip.geometry import Letterbox
from clsclip.results.prediction import CropLogits, LowResPrediction
from clsclip.results.restore import FullResolution, axis_weights
from clsclip.results.thresholds import threshold_logit
from tests import reference_postprocess as reference
from tests.reference_postprocess import restore_all as restore_logits

SIZES = [(37, 53), (641, 479), (64, 64), (1, 500), (500, 3)]


@pytest.mark.parametrize("size", SIZES)
@pytest.mark.parametrize("grid", [8, 4])
def test_restore_equals_two_interpolations(size, grid) -> None:
    logits = torch.randn(3, grid, grid, generator=torch.Generator().manual_seed(0)) * 4
    box = Letterbox.fit(size, 64)
    torch.testing.assert_close(
        restore_logits(logits, box), reference.restore(logits, box), atol=2e-5, rtol=0
    )


def test_axis_weights_rows_sum_to_one_and_mix_few_cells() -> None:
    weights = axis_weights(8, 64, 45, 37)
    assert weights.shape == (37, 8)
    torch.testing.assert_close(weights.sum(dim=1), torch.ones(37, dtype=torch.float64))
    assert ((weights != 0).sum(dim=1) <= 3).all()
    assert (weights >= 0).all()


def test_threshold_logit() -> None:
    assert threshold_logit(0.5) == 0.0
    assert threshold_logit(0.0) == -math.inf and threshold_logit(1.0) == math.inf
    for t in (0.01, 0.3, 0.75, 0.999):
        assert abs(1 / (1 + math.exp(-threshold_logit(t))) - t) < 1e-12


def _borders(size: tuple[int, int]) -> list[tuple[int, int, int, int]]:
    """Regions touching each border, a corner, the whole image and one in the middle."""
    h, w = size
    return [
        (0, h // 4, max(1, w // 3), h // 2 + 1),
        (w // 2, 0, w, max(1, h // 3)),
        (w - max(1, w // 5), h // 3, w, h),
        (w // 4, h - max(1, h // 4), w // 2 + 1, h),
        (0, 0, w, h),
        (w // 3, h // 3, w // 3 + max(1, w // 4), h // 3 + max(1, h // 4)),
    ]


def _prediction(size, fusion, num_classes=5, seed=0) -> LowResPrediction:
    generator = torch.Generator().manual_seed(seed)
    box = Letterbox.fit(size, 64)
    logits = torch.randn(num_classes, 8, 8, generator=generator) * 3
    crops = []
    for i, region in enumerate(_borders(size)):
        x0, y0, x1, y1 = region
        crop_box = Letterbox.fit((y1 - y0, x1 - x0), 64)
        crop_logits = torch.randn(8, 8, generator=generator) * 3
        crops.append(CropLogits(i % num_classes, region, crop_box, crop_logits))
    return LowResPrediction(logits, box, tuple(crops), fusion)


def _unambiguous(probs: np.ndarray, threshold: float, tol: float = 1e-5) -> np.ndarray:
    ordered = np.sort(probs, axis=0)
    near_tie = ordered[-1] - ordered[-2] < tol if len(probs) > 1 else np.zeros(probs.shape[1:])
    near_threshold = (np.abs(probs - threshold) < tol).any(axis=0)
    return ~(near_tie.astype(bool) | near_threshold)


@pytest.mark.parametrize("size", SIZES)
@pytest.mark.parametrize("fusion", ["max", "crops"])
@pytest.mark.parametrize("band_bytes", [2**12, 2**25])  # many tiny bands and chunks, or one
def test_tiles_and_fusion_equal_the_reference(size, fusion, band_bytes) -> None:
    prediction = _prediction(size, fusion)
    expected = reference.probs(prediction)
    full = FullResolution(prediction, band_bytes=band_bytes)
    if band_bytes == 2**12 and size[1] > 64:
        assert full.class_chunk < prediction.num_classes  # the chunked path is exercised
    got = np.stack([full.class_logits(k).sigmoid().numpy() for k in range(5)])
    np.testing.assert_allclose(got, expected, atol=1e-5, rtol=0)
    for threshold in (0.5, 0.2):
        labels, areas, peaks = full.label_map(threshold_logit(threshold))
        ok = _unambiguous(expected, threshold)
        assert ok.mean() > 0.99
        np.testing.assert_array_equal(
            labels.numpy()[ok], reference.label_map(expected, threshold)[ok]
        )
        assert np.abs(areas.numpy() - (expected > threshold).sum(axis=(1, 2))).max() <= (
            (~ok).sum()
        )
        np.testing.assert_allclose(peaks.sigmoid().numpy(), expected.max(axis=(1, 2)), atol=1e-5)


def test_crops_mode_replaces_and_max_mode_keeps_the_larger() -> None:
    box = Letterbox((4, 4), (4, 4), 4)  # logits already at the original size
    logits = torch.full((1, 4, 4), 2.0)
    inside = CropLogits(0, (0, 0, 2, 2), Letterbox((2, 2), (2, 2), 2), torch.full((2, 2), -1.0))
    over = CropLogits(0, (1, 1, 3, 3), Letterbox((2, 2), (2, 2), 2), torch.full((2, 2), 5.0))
    crops = FullResolution(LowResPrediction(logits, box, (inside, over), "crops"))
    out = crops.class_logits(0)
    assert out[0, 0] == -1.0 and out[1, 1] == 5.0 and out[2, 2] == 5.0 and out[3, 3] == 2.0
    maxed = FullResolution(LowResPrediction(logits, box, (inside, over), "max")).class_logits(0)
    assert maxed[0, 0] == 2.0 and maxed[1, 1] == 5.0 and maxed[3, 3] == 2.0
    assert logits[0, 0, 0] == 2.0  # the stored logits are not modified


def test_low_res_prediction_checks() -> None:
    box = Letterbox.fit((10, 10), 64)
    with pytest.raises(ValueError, match="K x h x w"):
        LowResPrediction(torch.zeros(8, 8), box)
    with pytest.raises(ValueError, match="unknown fusion"):
        LowResPrediction(torch.zeros(1, 8, 8), box, (), "or")  # type: ignore[arg-type]
    crop = CropLogits(3, (0, 0, 5, 5), Letterbox.fit((5, 5), 64), torch.zeros(8, 8))
    with pytest.raises(ValueError, match=r"crop class 3 is not in 0 \.\. 0"):
        LowResPrediction(torch.zeros(1, 8, 8), box, (crop,))

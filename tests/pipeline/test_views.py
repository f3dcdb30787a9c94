"""ClsCLIP+ through the Segmenter: zoom-in geometry, fusion, and what runs through the model."""

import numpy as np
import pytest
import torch

from clsclip.proposals.zoom import ZoomSettings
from tests.conftest import random_rgb, tiny_segmenter


def _colour_threshold_segmenter(**zoom):
    """A segmenter whose model answers 'is this pixel red' (class 0) or 'green' (class 1) at the
    full input resolution, so where predictions land can be checked to the pixel."""
    seg = tiny_segmenter()
    seg.zoom = ZoomSettings(**zoom)
    mean = torch.tensor(seg.model.image_mean).view(3, 1, 1)
    std = torch.tensor(seg.model.image_std).view(3, 1, 1)
    calls = []

    def predict_pairs(pixels, text, pairs, *, chunk_size):
        calls.append(pairs.clone())
        rgb = pixels * std + mean
        return torch.stack([40 * (rgb[v, c] - 0.5) for v, c in pairs.tolist()])

    seg.model.predict_pairs = predict_pairs
    return seg, calls


def _edges(mask: np.ndarray) -> tuple[int, int, int, int]:
    rows, cols = np.nonzero(mask)
    return cols.min(), rows.min(), cols.max() + 1, rows.max() + 1


def _near(square, size, pad: int = 8) -> np.ndarray:
    x0, y0, x1, y1 = square
    out = np.zeros(size, bool)
    out[max(0, y0 - pad) : y1 + pad, max(0, x0 - pad) : x1 + pad] = True
    return out


@pytest.mark.parametrize("size", [(173, 251), (480, 641), (301, 97)])
def test_crop_predictions_land_within_a_pixel(size) -> None:
    height, width = size
    image = np.zeros((height, width, 3), np.uint8)
    # Small red squares touching each of the four borders, and one in the middle.
    squares = [
        (0, height // 3, 9, height // 3 + 7),
        (width - 8, height // 2, width, height // 2 + 9),
        (width // 3, 0, width // 3 + 11, 6),
        (width // 2, height - 7, width // 2 + 8, height),
        (width // 2 + 3, height // 3 + 1, width // 2 + 12, height // 3 + 8),
    ]
    for x0, y0, x1, y1 in squares:
        image[y0:y1, x0:x1, 0] = 255
    seg, _ = _colour_threshold_segmenter(fusion="crops", margin=0.5, min_size=16)
    boxes = {"red": [list(s) for s in squares]}
    result = seg.segment(image, ["red", "green"], proposals=boxes)
    plain = seg.segment(image, ["red", "green"], proposals=None)
    for square in squares:
        got = _edges(result.masks[0] & _near(square, size))
        assert np.abs(np.subtract(got, square)).max() <= 1, (got, square)
    assert not result.masks[1].any()
    if max(size) >= 480:
        # There the 64 px model input is 10x coarser than the image: without zoom the small
        # squares are lost or blurred by pixels, so the crops (not the full pass) placed them.
        errors = [
            np.abs(np.subtract(_edges(plain.masks[0] & _near(s, size)), s)).max()
            if (plain.masks[0] & _near(s, size)).any()
            else 99
            for s in squares
        ]
        assert max(errors) > 1


def test_outside_every_box_the_full_image_prediction_is_kept() -> None:
    seg = tiny_segmenter()
    image = random_rgb(90, 120)
    plain = seg.segment(image, ["dog", "cat"], proposals=None)
    boxes = {"dog": [[10, 10, 30, 25], [100, 60, 130, 100]], "cat": [[-5, 40, 8, 44]]}
    zoomed = seg.segment(image, ["dog", "cat"], proposals=boxes)
    assert set(zoomed.boxes) == {"dog", "cat"}
    np.testing.assert_array_equal(zoomed.boxes["cat"], np.float32([[-5, 40, 8, 44]]))
    inside = np.zeros((2, 90, 120), bool)
    for k, name in enumerate(["dog", "cat"]):
        for box in boxes[name]:
            from clsclip.proposals.zoom import crop_region

            x0, y0, x1, y1 = crop_region(box, (90, 120), seg.zoom)
            inside[k, y0:y1, x0:x1] = True
    # Equal up to float rounding of a differently sized batch (`fuse` itself copies exactly).
    np.testing.assert_allclose(zoomed.probs[~inside], plain.probs[~inside], atol=1e-6)
    assert (zoomed.probs >= plain.probs - 1e-6).all()
    assert (zoomed.probs[inside] != plain.probs[inside]).any()


def test_a_box_over_the_whole_image_changes_nothing() -> None:
    seg = tiny_segmenter()
    image = random_rgb(45, 77)
    plain = seg.segment(image, ["dog"], proposals=None)
    whole = seg.segment(image, ["dog"], proposals={"dog": [[0, 0, 77, 45]]})
    np.testing.assert_allclose(whole.probs, plain.probs, atol=1e-5)


def test_no_matching_box_gives_the_full_image_result() -> None:
    seg = tiny_segmenter()
    image = random_rgb(40, 40)
    plain = seg.segment(image, ["dog", "cat"], proposals=None)
    for proposals in ({"dog": []}, {"cat": [[500, 500, 600, 600]]}):
        result = seg.segment(image, ["dog", "cat"], proposals=proposals)
        np.testing.assert_array_equal(result.probs, plain.probs)
        assert result.boxes == {}


def test_only_matching_boxes_are_segmented_in_one_batched_call() -> None:
    seg, calls = _colour_threshold_segmenter()
    image = random_rgb(100, 100)
    boxes = {"a": [[0, 0, 10, 10], [50, 50, 70, 80]], "c": [[20, 20, 25, 25]]}
    seg.segment(image, ["a", "b", "c"], proposals=boxes)
    assert len(calls) == 1  # the full image and every crop in one run
    pairs = calls[0].tolist()
    assert pairs[:3] == [[0, 0], [0, 1], [0, 2]]  # the whole image for every class
    assert sorted(c for _, c in pairs[3:]) == [0, 0, 2]  # one pass per matching crop and class
    assert len({v for v, _ in pairs}) == 4


def test_a_shared_region_is_one_view() -> None:
    seg, calls = _colour_threshold_segmenter()
    box = [[30, 30, 60, 60]]
    seg.segment(random_rgb(100, 100), ["a", "b"], proposals={"a": box, "b": box})
    assert calls[0].tolist() == [[0, 0], [0, 1], [1, 0], [1, 1]]


def test_default_proposals_of_the_segmenter() -> None:
    seg = tiny_segmenter()
    seg.proposer = seg._resolve({"dog": [[5, 5, 20, 20]]})
    image = random_rgb(50, 50)
    assert "dog" in seg.segment(image, ["dog"]).boxes
    assert seg.segment(image, ["dog"], proposals=None).boxes == {}


def test_lists_of_images_with_boxes() -> None:
    seg = tiny_segmenter()
    seg.chunk_size = 2
    images = [random_rgb(50, 60, seed=i) for i in range(3)]
    results = seg.segment(images, ["dog"], proposals={"dog": [[10, 10, 30, 30]]})
    for image, result in zip(images, results, strict=True):
        alone = seg.segment(image, ["dog"], proposals={"dog": [[10, 10, 30, 30]]})
        np.testing.assert_allclose(result.probs, alone.probs, atol=1e-5)

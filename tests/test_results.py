import json

import numpy as np
import pytest
from PIL import Image

from clsclip import SegmentationResult
from clsclip.visualize import palette


def _result(threshold: float = 0.5) -> SegmentationResult:
    probs = np.zeros((2, 3, 4), np.float32)
    probs[0, 0, :2] = 0.9  # class 0 alone
    probs[1, 1, :] = 0.7  # class 1 alone
    probs[0, 2, 0], probs[1, 2, 0] = 0.6, 0.8  # both, class 1 more probable
    probs[0, 2, 1], probs[1, 2, 1] = 0.8, 0.6  # both, class 0 more probable
    probs[0, 2, 2] = 0.5  # exactly at threshold: not above
    image = Image.new("RGB", (4, 3), (10, 20, 30))
    return SegmentationResult(["dog", "cat"], probs, threshold, image)


def test_masks_and_label_map() -> None:
    result = _result()
    assert result.masks.dtype == bool and result.masks.shape == (2, 3, 4)
    expected = np.array([[1, 1, 0, 0], [2, 2, 2, 2], [2, 1, 0, 0]], np.int32)
    np.testing.assert_array_equal(result.label_map, expected)
    assert result.label_map.dtype == np.int32
    assert result.size == (3, 4)
    np.testing.assert_array_equal(result.mask("cat"), result.masks[1])
    with pytest.raises(KeyError, match=r"'bird' is not in this result; classes: \['dog', 'cat'\]"):
        result.mask("bird")


def test_with_threshold() -> None:
    lower = _result().with_threshold(0.45)
    assert lower.masks[0, 2, 2] and lower.label_map[2, 2] == 1


def test_mask_images_and_overlay() -> None:
    result = _result()
    masks = result.mask_images()
    assert list(masks) == ["dog", "cat"]
    np.testing.assert_array_equal(np.asarray(masks["dog"]), result.masks[0] * 255)
    overlay = result.overlay(alpha=1.0, legend=False)
    assert overlay.size == (4, 3) and overlay.mode == "RGB"
    colors = palette(2)
    np.testing.assert_array_equal(np.asarray(overlay)[0, 0], colors[0])
    np.testing.assert_array_equal(np.asarray(overlay)[1, 0], colors[1])
    np.testing.assert_array_equal(np.asarray(overlay)[0, 3], [10, 20, 30])
    big = SegmentationResult(
        ["dog"], np.ones((1, 200, 300), np.float32), 0.5, Image.new("RGB", (300, 200))
    )
    assert big.overlay().size == (300, 200)  # with a legend
    with pytest.raises(ValueError, match="holds no image"):
        SegmentationResult(["dog"], np.zeros((1, 2, 2), np.float32)).overlay()


def test_palette_is_distinct_and_stable() -> None:
    colors = palette(40)
    assert len({tuple(c) for c in colors}) == 40
    np.testing.assert_array_equal(palette(3), colors[:3])
    np.testing.assert_array_equal(colors[0], [128, 0, 0])  # PASCAL VOC's first class colour


def test_save_writes_masks_overlay_and_summary(tmp_path) -> None:
    result = _result()
    paths = result.save(tmp_path, "img")
    names = sorted(p.name for p in paths)
    assert names == ["img.json", "img_mask00_dog.png", "img_mask01_cat.png", "img_overlay.png"]
    summary = json.loads((tmp_path / "img.json").read_text())
    assert summary["classes"][0]["area_pixels"] == int(result.masks[0].sum())
    assert summary["height"] == 3 and summary["width"] == 4
    mask = np.asarray(Image.open(tmp_path / "img_mask01_cat.png"))
    np.testing.assert_array_equal(mask, result.masks[1] * 255)


def test_invalid_shapes() -> None:
    with pytest.raises(ValueError, match="K x H x W with K = 2"):
        SegmentationResult(["a", "b"], np.zeros((1, 2, 2), np.float32))
    with pytest.raises(ValueError, match="threshold"):
        SegmentationResult(["a"], np.zeros((1, 2, 2), np.float32), threshold=2.0)

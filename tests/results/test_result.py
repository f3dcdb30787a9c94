import json

import numpy as np
import pytest
import torch
from PIL import Image

from clsclip import SegmentationResult
from clsclip.results.drawing import palette


def _result(threshold: float = 0.5) -> SegmentationResult:
    probs = np.zeros((2, 3, 4), np.float32)
    probs[0, 0, :2] = 0.9  # class 0 alone
    probs[1, 1, :] = 0.7  # class 1 alone
    probs[0, 2, 0], probs[1, 2, 0] = 0.6, 0.8  # both, class 1 more probable
    probs[0, 2, 1], probs[1, 2, 1] = 0.8, 0.6  # both, class 0 more probable
    probs[0, 2, 2] = 0.5  # exactly at threshold: not above
    image = Image.new("RGB", (4, 3), (10, 20, 30))
    return SegmentationResult.from_probs(["dog", "cat"], probs, threshold, image)


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
    big = SegmentationResult.from_probs(
        ["dog"], np.ones((1, 200, 300), np.float32), 0.5, Image.new("RGB", (300, 200))
    )
    assert big.overlay().size == (300, 200)  # with a legend
    with pytest.raises(ValueError, match="holds no image"):
        SegmentationResult.from_probs(["dog"], np.zeros((1, 2, 2), np.float32)).overlay()


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
        SegmentationResult.from_probs(["a", "b"], np.zeros((1, 2, 2), np.float32))
    with pytest.raises(ValueError, match="threshold"):
        SegmentationResult.from_probs(["a"], np.zeros((1, 2, 2), np.float32), threshold=2.0)


# Results from the segmenter: lazy, tiled and on logits, against the plain reference path.

ODD_SIZES = [(37, 53), (641, 479)]


def _border_boxes(height: int, width: int) -> dict[str, list[list[int]]]:
    return {
        "dog": [[0, 0, width // 4, height // 5], [width - 9, height // 2, width, height]],
        "cat": [[width // 3, height - 6, width // 2, height], [0, height // 3, 7, height // 2]],
        "grass": [[width // 2, 0, width, 5]],
    }


@pytest.mark.parametrize("size", ODD_SIZES)
@pytest.mark.parametrize("fusion", ["max", "crops"])
def test_segment_agrees_with_the_reference_path(size, fusion) -> None:
    from clsclip.proposals.zoom import ZoomSettings
    from tests import reference_postprocess as reference
    from tests.conftest import random_rgb, tiny_segmenter

    seg = tiny_segmenter()
    seg.zoom = ZoomSettings(fusion=fusion, min_size=8)
    names = ["dog", "cat", "grass"]
    image = random_rgb(*size, seed=3)
    result = seg.segment(image, names, proposals=_border_boxes(*size))
    assert len(result.crops) == 5
    assert {c.region[0] for c in result.crops} >= {0} and {c.region[3] for c in result.crops} >= {
        size[0]
    }
    expected = reference.probs(result.prediction)
    np.testing.assert_allclose(result.probs, expected, atol=1e-5, rtol=0)
    for k, name in enumerate(names):
        np.testing.assert_allclose(result.prob(name), expected[k], atol=1e-5, rtol=0)
    for threshold in (result.threshold, 0.3):
        lowered = result.with_threshold(threshold)
        ordered = np.sort(expected, axis=0)
        clear = (ordered[-1] - ordered[-2] > 1e-5) & (np.abs(expected - threshold) > 1e-5).all(
            axis=0
        )
        want = reference.label_map(expected, threshold)
        np.testing.assert_array_equal(lowered.label_map[clear], want[clear])
        np.testing.assert_array_equal(lowered.masks[:, clear], (expected > threshold)[:, clear])
        summary = lowered.summary()
        for k, entry in enumerate(summary["classes"]):
            assert (
                abs(entry["area_pixels"] - int((expected[k] > threshold).sum())) <= (~clear).sum()
            )
            assert abs(entry["max_prob"] - float(expected[k].max())) < 1e-5


def test_the_result_is_compact_and_public() -> None:
    from tests.conftest import random_rgb, tiny_segmenter

    seg = tiny_segmenter()
    result = seg.segment(random_rgb(641, 479), ["dog", "cat"], proposals={"dog": [[5, 5, 40, 40]]})
    assert result.low_res_logits.shape == (2, 8, 8)  # the 64 px input's 8 x 8 patch grid
    assert result.low_res_logits.dtype == torch.float32
    assert result.letterbox.original_size == (641, 479) and result.size == (641, 479)
    assert [c.class_index for c in result.crops] == [0]
    assert result.crops[0].logits.shape == (8, 8)
    assert "SegmentationResult(classes=['dog', 'cat'], size=(641, 479)" in repr(result)
    moved = result.to("cpu")
    np.testing.assert_array_equal(moved.label_map, result.label_map)


def test_with_threshold_and_views_never_rerun_the_network() -> None:
    from tests.conftest import random_rgb, tiny_segmenter

    seg = tiny_segmenter()
    result = seg.segment(random_rgb(50, 70), ["dog", "cat"])

    def forbidden(*args, **kwargs):
        raise AssertionError("the network ran again")

    seg.model.predict_pairs = forbidden
    lower = result.with_threshold(0.1)
    assert lower.threshold == 0.1 and lower.low_res_logits is result.low_res_logits
    assert lower.masks.sum() >= result.masks.sum()
    lower.summary()
    assert lower.overlay().size == (70, 50)


def test_mask_images_are_computed_on_lookup(monkeypatch) -> None:
    result = _result()
    looked_up = []
    original = SegmentationResult._mask_at

    def spy(self, k):
        looked_up.append(k)
        return original(self, k)

    monkeypatch.setattr(SegmentationResult, "_mask_at", spy)
    images = result.mask_images()
    assert len(images) == 2 and list(images) == ["dog", "cat"] and looked_up == []
    np.testing.assert_array_equal(np.asarray(images["cat"]), result.mask("cat") * 255)
    assert looked_up[0] == 1


def test_constructor_takes_network_output_not_probs() -> None:
    with pytest.raises(TypeError, match="use SegmentationResult.from_probs"):
        SegmentationResult(["a"], np.zeros((1, 2, 2), np.float32))  # type: ignore[arg-type]


def test_from_probs_keeps_exact_zero_and_one() -> None:
    probs = np.array([[[0.0, 1.0], [0.25, 0.75]]], np.float32)
    result = SegmentationResult.from_probs(["a"], probs, threshold=0.0)
    np.testing.assert_allclose(result.probs, probs, atol=1e-7)
    np.testing.assert_array_equal(result.masks[0], [[False, True], [True, True]])
    assert not SegmentationResult.from_probs(["a"], probs, threshold=1.0).masks.any()


def test_from_probs_keeps_the_image_shape_not_a_square() -> None:
    probs = np.random.default_rng(0).random((2, 3, 500)).astype(np.float32)
    result = SegmentationResult.from_probs(["a", "b"], probs, threshold=0.3)
    assert result.low_res_logits.shape == (2, 3, 500)  # a skinny strip stays skinny
    np.testing.assert_allclose(result.probs, probs, atol=1e-6)
    np.testing.assert_array_equal(result.masks, probs > 0.3)


def test_per_component_exports_hold_one_component_at_a_time() -> None:
    """A 300 x 300 speckle map of 22,500 single-pixel components: COCO and Label Studio
    instances are encoded one component at a time (before: every component at full size at
    once, 2 GB and a MemoryError); supervision holds its own output and the crops alone."""
    import tracemalloc

    pytest.importorskip("scipy")
    pytest.importorskip("pycocotools")
    probs = np.zeros((1, 300, 300), np.float32)
    probs[0, ::2, ::2] = 0.9
    result = SegmentationResult.from_probs(["speck"], probs)
    tracemalloc.start()
    try:
        annotations = result.to_coco(instances=True)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert len(annotations) == 150 * 150
    assert {a["area"] for a in annotations} == {1}
    assert peak < 150 * 2**20, peak  # the annotations themselves, not 22,500 masks

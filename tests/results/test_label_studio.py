"""Label Studio pre-annotations, read back by Label Studio's own converter and config parser."""

from __future__ import annotations

import numpy as np
import pytest

from clsclip import ClassSpec
from clsclip.results.label_studio import brush_rle, labeling_config
from tests.conftest import import_when_run, random_rgb

_libraries, lib = import_when_run(brush="label_studio_converter.brush")


label_config = pytest.importorskip("label_studio_tools.core.label_config")


def _decode(rle: list[int], height: int, width: int) -> np.ndarray:
    return lib.brush.decode_rle(rle).reshape(height, width, 4)[:, :, 3] == 255


@pytest.mark.parametrize("shape", [(1, 1), (5, 7), (40, 53), (257, 300)])
@pytest.mark.parametrize("fill", [0.0, 0.02, 0.5, 1.0])
def test_brush_rle_is_what_label_studio_decodes(shape, fill) -> None:
    mask = np.random.default_rng(int(fill * 100)).random(shape) < fill
    rle = brush_rle(mask)
    assert all(isinstance(v, int) and 0 <= v <= 255 for v in rle)
    np.testing.assert_array_equal(_decode(rle, *shape), mask)


def test_runs_longer_than_the_widest_length_field_are_split() -> None:
    mask = np.zeros((300, 400), bool)
    mask[120:, :] = True  # 72,000 pixels (288,000 RGBA bytes) in one run
    mask[5, 7] = True
    np.testing.assert_array_equal(_decode(brush_rle(mask), 300, 400), mask)
    assert len(brush_rle(mask)) < 40  # runs, not pixels
    with pytest.raises(ValueError, match="must be H x W"):
        brush_rle(np.zeros((2, 2, 2), bool))


def test_a_result_becomes_brush_regions_of_its_masks(segmenter) -> None:
    image = random_rgb(45, 61, seed=2)
    classes = [ClassSpec("dog", threshold=0.5), "cat", "sky"]
    reference = segmenter.segment(image, classes, threshold={"cat": 0.99, "sky": 0.0})
    prediction = reference.to_label_studio(from_name="tags", to_name="photo", model_version="v1")
    assert prediction["model_version"] == "v1"
    regions = prediction["result"]
    assert [r["value"]["brushlabels"] for r in regions] == [["dog"], ["sky"]]  # cat: empty
    for region in regions:  # each decoded by Label Studio's own RLE reader
        name = region["value"]["brushlabels"][0]
        np.testing.assert_array_equal(_decode(region["value"]["rle"], 45, 61), reference.mask(name))
        assert (region["original_height"], region["original_width"]) == (45, 61)
        assert region["from_name"] == "tags" and region["to_name"] == "photo"
        assert region["type"] == "brushlabels" and 0 < region["score"] <= 1
    assert prediction["score"] == pytest.approx(np.mean([r["score"] for r in regions]), abs=1e-6)


def test_instances_are_one_region_per_connected_component(segmenter) -> None:
    pytest.importorskip("scipy")
    from clsclip import SegmentationResult

    probs = np.zeros((1, 30, 40), np.float32)
    probs[0, 2:8, 2:8] = 0.9
    probs[0, 20:28, 25:35] = 0.8
    result = SegmentationResult.from_probs(["dog"], probs)
    regions = result.to_label_studio(instances=True)["result"]
    assert len(regions) == 2
    areas = sorted(int(_decode(r["value"]["rle"], 30, 40).sum()) for r in regions)
    assert areas == [36, 80]


def test_the_labeling_config_is_what_label_studio_parses() -> None:
    xml = labeling_config(["dog", 'hot "dog" & <bun>'], [[128, 0, 0], [0, 128, 0]],
                          from_name="tags", to_name="photo")  # fmt: skip
    parsed = label_config.parse_config(xml)
    assert parsed["tags"]["type"] == "BrushLabels" and parsed["tags"]["to_name"] == ["photo"]
    assert parsed["tags"]["labels"] == ["dog", 'hot "dog" & <bun>']
    assert parsed["tags"]["labels_attrs"]["dog"]["background"] == "#800000"
    assert parsed["tags"]["inputs"] == [{"type": "Image", "value": "image"}]

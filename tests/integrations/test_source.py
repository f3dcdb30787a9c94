"""What the integrations share: the segmenter they run and the images they pass on."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from clsclip.integrations._source import load_segmenter, rgb_image


def test_a_segmenter_is_used_as_given_and_a_folder_is_loaded(segmenter, saved_model) -> None:
    assert load_segmenter(segmenter) is segmenter
    loaded = load_segmenter(saved_model, device="cpu")
    assert loaded.config == segmenter.config
    with pytest.raises(TypeError, match=r"loading options \['device'\] need a model folder"):
        load_segmenter(segmenter, device="cpu")
    with pytest.raises(TypeError, match="not int"):
        load_segmenter(3)  # type: ignore[arg-type]


def test_gray_and_rgba_arrays_become_rgb(segmenter) -> None:
    rgba = np.random.default_rng(0).integers(0, 256, (9, 11, 4), dtype=np.uint8)
    gray = rgba[..., 0]
    assert np.array_equal(
        np.asarray(rgb_image(rgba)), np.asarray(Image.fromarray(rgba).convert("RGB"))
    )
    for image in (gray, gray[..., None]):
        out = np.asarray(rgb_image(image))
        assert out.shape == (9, 11, 3) and (out == gray[..., None]).all()
    rgb = rgba[..., :3]
    assert rgb_image(rgb) is rgb  # as it is: the segmenter takes it
    result = segmenter.segment(rgb_image(gray), ["dog"])
    assert result.size == (9, 11)

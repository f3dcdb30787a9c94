import numpy as np
import pytest

from clsclip import Segmenter
from tests.conftest import random_rgb, tiny_segmenter


def test_int8_on_cpu_is_close_to_fp32(saved_model) -> None:
    image, names = random_rgb(40, 50), ["dog", "cat"]
    fp32 = Segmenter.from_pretrained(saved_model, device="cpu")
    int8 = Segmenter.from_pretrained(saved_model, device="cpu", precision="int8")
    assert int8.precision == "int8"
    linear_types = {type(m).__name__ for m in int8.model.backbone.visual.transformer.modules()}
    assert "Linear" in linear_types  # the quantised dynamic Linear keeps the class name
    a, b = fp32.segment(image, names).probs, int8.segment(image, names).probs
    assert np.abs(a - b).max() < 0.05
    assert np.abs(a - b).max() > 0  # it really ran another path
    with pytest.raises(RuntimeError, match="int8 .* cannot be saved"):
        int8.save_pretrained("unused")


def test_precision_checks() -> None:
    seg = tiny_segmenter()
    with pytest.raises(ValueError, match="precision 'bf16' needs a CUDA device"):
        Segmenter(seg.model, seg.config, device="cpu", precision="bf16")
    with pytest.raises(ValueError, match=r"unknown precision 'fp8'; choose one of \['fp32'"):
        Segmenter(seg.model, seg.config, precision="fp8")  # type: ignore[arg-type]

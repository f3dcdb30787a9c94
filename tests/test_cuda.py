"""CUDA paths. These run where a GPU is present (checked by hand on one; CI has none)."""

import numpy as np
import pytest
import torch

from clsclip import Segmenter
from tests.conftest import random_rgb, tiny_segmenter

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")


def test_cuda_matches_cpu(saved_model) -> None:
    cpu = tiny_segmenter()
    gpu = Segmenter.from_pretrained(saved_model, device="cuda")
    assert gpu.device.type == "cuda"
    assert all(p.device.type == "cuda" for p in gpu.model.parameters())
    images = [random_rgb(37, 53), random_rgb(641, 479, seed=1)]
    names = ["dog", "cat", "tree"]
    for a, b in zip(cpu.segment(images, names), gpu.segment(images, names), strict=True):
        assert b.probs.dtype == np.float32 and b.probs.shape == a.probs.shape
        # cuDNN convolutions use TF32 by default: agreement to about 1e-3.
        np.testing.assert_allclose(b.probs, a.probs, atol=2e-3)


def test_to_moves_model_and_cache() -> None:
    seg = tiny_segmenter()
    seg.encode_classes(["dog"])
    seg.to("cuda:0")
    assert seg.encode_classes(["dog"]).device.type == "cuda"
    seg.to("cpu")
    assert seg.encode_classes(["dog"]).device.type == "cpu"


def test_zoom_in_on_cuda_matches_cpu(saved_model) -> None:
    cpu = tiny_segmenter()
    gpu = Segmenter.from_pretrained(saved_model, device="cuda")
    image, boxes = random_rgb(90, 130), {"dog": [[10, 10, 40, 50], [100, 60, 130, 90]]}
    a = cpu.segment(image, ["dog", "cat"], proposals=boxes)
    b = gpu.segment(image, ["dog", "cat"], proposals=boxes)
    np.testing.assert_allclose(b.probs, a.probs, atol=2e-3)
    np.testing.assert_array_equal(b.boxes["dog"], a.boxes["dog"])


@pytest.mark.parametrize("precision", ["bf16", "fp16"])
def test_half_precision_on_cuda_agrees_with_fp32(saved_model, precision) -> None:
    image, names = random_rgb(64, 80), ["dog", "cat"]
    fp32 = Segmenter.from_pretrained(saved_model, device="cuda").segment(image, names).probs
    half = Segmenter.from_pretrained(saved_model, device="cuda", precision=precision)
    probs = half.segment(image, names).probs
    assert probs.dtype == np.float32
    assert np.abs(probs - fp32).max() < 0.02
    with pytest.raises(ValueError, match="needs a CUDA device"):
        half.to("cpu")


def test_post_processing_runs_on_the_device(saved_model) -> None:
    """The result's logits stay on the GPU and the full-resolution work runs there, equal to
    the plain reference on the same logits."""
    from tests import reference_postprocess as reference

    gpu = Segmenter.from_pretrained(saved_model, device="cuda")
    image, boxes = random_rgb(641, 479), {"dog": [[0, 0, 60, 40], [430, 600, 479, 641]]}
    result = gpu.segment(image, ["dog", "cat"], proposals=boxes)
    assert result.low_res_logits.device.type == "cuda"
    assert all(c.logits.device.type == "cuda" for c in result.crops)
    np.testing.assert_allclose(result.probs, reference.probs(result.prediction), atol=1e-5)
    batch = torch.from_numpy(random_rgb(96, 128)).permute(2, 0, 1)[None].cuda()
    out = gpu.segment_torch(batch, ["dog", "cat"])
    assert out.label_maps.device.type == "cuda" and out.label_maps.shape == (1, 96, 128)


def test_a_calibrated_segmenter_moves_with_its_original() -> None:
    """They share the network: moving one moves both, and both know where it is."""
    seg = tiny_segmenter()
    image = random_rgb(40, 40)
    labels = np.full((40, 40), 255, np.uint8)
    labels[:20] = 1
    calibrated = seg.calibrate([(image, labels)], ["dog"])
    seg.to("cuda:0")
    assert calibrated.device.type == "cuda"
    assert calibrated.segment(image, ["dog"]).mask("dog").shape == (40, 40)
    calibrated.to("cpu")
    assert seg.device.type == "cpu" and next(seg.model.parameters()).device.type == "cpu"

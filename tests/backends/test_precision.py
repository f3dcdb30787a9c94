import numpy as np
import pytest
import torch

from clsclip import Segmenter
from clsclip.backends import precision as precision_module
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
    with pytest.raises(RuntimeError, match="int8 segmenter .* cannot be saved"):
        int8.save_pretrained("unused")


def test_precision_checks() -> None:
    seg = tiny_segmenter()
    with pytest.raises(ValueError, match="precision 'fp16' needs a CUDA device"):
        Segmenter(seg.model, seg.config, device="cpu", precision="fp16")
    with pytest.raises(ValueError, match=r"unknown precision 'fp8'; choose one of \['fp32'"):
        Segmenter(seg.model, seg.config, precision="fp8")  # type: ignore[arg-type]


@pytest.fixture
def cpu_has(monkeypatch):
    """Pretend the CPU has (or lacks) a native bf16 feature; nothing depends on this machine."""

    def set_feature(feature):
        monkeypatch.setattr(precision_module, "cpu_bf16_feature", lambda: feature)

    return set_feature


def test_bf16_is_refused_on_a_cpu_without_native_bf16(cpu_has, saved_model) -> None:
    cpu_has(None)
    with pytest.raises(
        ValueError, match="needs native bf16 matrix units .*amx_bf16 or avx512_bf16"
    ):
        Segmenter.from_pretrained(saved_model, device="cpu", precision="bf16")
    auto = Segmenter.from_pretrained(saved_model, device="cpu", precision="auto")
    assert auto.precision == "fp32" and "no native bf16" in repr(auto)
    assert auto.model.backbone.visual.conv1.weight.dtype == torch.float32


@pytest.mark.parametrize("feature", ["amx_bf16", "avx512_bf16"])
def test_auto_picks_bf16_weights_where_the_cpu_has_them(cpu_has, saved_model, feature) -> None:
    cpu_has(feature)
    auto = Segmenter.from_pretrained(saved_model, device="cpu", precision="auto")
    assert auto.precision == "bf16" and f"auto: this CPU has {feature}" in repr(auto)
    weights = {p.dtype for p in auto.model.parameters()}
    assert weights == {torch.bfloat16}  # converted, not autocast


def test_bf16_weights_agree_with_fp32(cpu_has, saved_model) -> None:
    """bf16 weights, inputs converted at the boundary, logits and post-processing in float32:
    probabilities within 0.01 of fp32 on a tiny model, label maps equal away from ties."""
    cpu_has("amx_bf16")
    image, names = random_rgb(40, 50), ["dog", "cat", "sky"]
    fp32 = Segmenter.from_pretrained(saved_model, device="cpu")
    bf16 = Segmenter.from_pretrained(saved_model, device="cpu", precision="bf16")
    a, b = fp32.segment(image, names), bf16.segment(image, names)
    assert b.low_res_logits.dtype == torch.float32
    assert 0 < np.abs(a.probs - b.probs).max() < 0.01
    probs = np.sort(a.probs, axis=0)
    clear = (probs[-1] - probs[-2] > 0.02) & (np.abs(probs[-1] - 0.5) > 0.02)
    np.testing.assert_array_equal(a.label_map[clear], b.label_map[clear])
    torch.testing.assert_close(
        bf16.encode_classes(names), fp32.encode_classes(names), atol=0.02, rtol=0
    )
    assert bf16.encode_classes(names).dtype == torch.float32
    with pytest.raises(RuntimeError, match="bf16 segmenter whose weights were converted cannot"):
        bf16.save_pretrained("unused")


def test_fused_blocks_run_in_bf16() -> None:
    """The fused open_clip block (fused attention, buffered feed-forward) in bf16 equals
    open_clip's own block in bf16 (both rounded), so no fallback is needed."""
    from clsclip.model.fused_block import is_plain_block, run_block

    block = tiny_segmenter().model.backbone.blocks[0].to(torch.bfloat16)
    x = torch.randn(3, 17, 64, dtype=torch.bfloat16)
    assert is_plain_block(block)
    with torch.inference_mode():
        torch.testing.assert_close(run_block(block, x), block(x), atol=0.05, rtol=0.02)


def test_int8_without_torch_ao_quantization_says_what_to_use(saved_model, monkeypatch) -> None:
    """PyTorch deprecates torch.ao.quantization (docs/limits.md): a torch without it gets one
    error naming the alternatives, not a traceback from inside the backend."""
    import sys

    monkeypatch.setitem(sys.modules, "torch.ao.quantization", None)  # as if torch dropped it
    with pytest.raises(ImportError, match=r"precision 'int8' needs torch.ao.quantization.*bf16"):
        Segmenter.from_pretrained(saved_model, device="cpu", precision="int8")

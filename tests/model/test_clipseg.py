"""CLIPSeg checkpoints made with transformers give the same logits through clsclip."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

import numpy as np
import pytest
import torch
from transformers import CLIPSegConfig

from clsclip import ClipSegConfig, Segmenter
from clsclip.model import ClipSegModel
from tests.conftest import random_rgb

if TYPE_CHECKING:  # imported by the tests that build one: its modules take seconds to import
    from transformers import CLIPSegForImageSegmentation

SIZE = 96  # model input in the tests; the checkpoints are made at 32 or 64 px


def _hf_model(
    *,
    patch: int = 16,
    extract=(1, 2, 3),
    reduce_dim: int = 16,
    complex_head: bool = True,
    conditional_layer: int = 0,
    seed: int = 0,
) -> CLIPSegForImageSegmentation:
    torch.manual_seed(seed)
    config = CLIPSegConfig(
        text_config={
            "hidden_size": 32,
            "intermediate_size": 64,
            "num_hidden_layers": 2,
            "num_attention_heads": 2,
            "vocab_size": 49408,
        },
        vision_config={
            "hidden_size": 48,
            "intermediate_size": 96,
            "num_hidden_layers": 4,
            "num_attention_heads": 2,
            "patch_size": patch,
            "image_size": 2 * patch,
        },
        projection_dim=24,
        extract_layers=list(extract),
        reduce_dim=reduce_dim,
        decoder_num_attention_heads=2,
        decoder_intermediate_size=40,
        conditional_layer=conditional_layer,
        use_complex_transposed_convolution=complex_head,
    )
    from transformers import CLIPSegForImageSegmentation

    model = CLIPSegForImageSegmentation(config).eval()
    with torch.no_grad():  # transformers zero-initialises some biases; make every tensor count
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.02)
    return model


def _compare(hf_model, folder, names=("a dog", "the red car", "sky")) -> None:
    """Identical inputs through both: float64 agrees to 1e-4 (in fact ~1e-9), float32 to float
    rounding of the logits' scale (random weights give logits of several hundred)."""
    hf_model.save_pretrained(folder)
    seg = Segmenter.from_pretrained(folder, device="cpu")
    assert isinstance(seg.model, ClipSegModel) and isinstance(seg.config, ClipSegConfig)
    pixels = torch.randn(2, 3, SIZE, SIZE)
    ids = seg.model.tokenizer(list(names))
    for dtype, tolerance in ((torch.float64, 1e-4), (torch.float32, None)):
        seg.model.to(dtype)
        hf_model.to(dtype)
        with torch.no_grad():
            text = seg.model.encode_class_names(list(names))
            ours = seg.model.predict_logits(pixels.to(dtype), text, chunk_size=4)
            for b in range(2):
                reference = hf_model(
                    input_ids=ids,
                    pixel_values=pixels[b : b + 1].to(dtype).repeat(len(names), 1, 1, 1),
                ).logits
                # Input size, except the refined head on 32 px patches: two transposed convs of
                # stride 8 upsample 64x, so transformers' B/32 "refined" output is 2x the input.
                assert reference.shape == ours[b].shape
                atol = tolerance or 1e-5 * reference.abs().max().item()
                torch.testing.assert_close(ours[b], reference, rtol=0, atol=atol)


@pytest.mark.parametrize(
    "options",
    [
        {},  # ViT-B/16-like patches, refined head
        {"patch": 32},  # B/32 patches, refined head
        {"patch": 32, "complex_head": False},
        {"complex_head": False},  # the plain head
        {"extract": (0, 2), "reduce_dim": 8, "conditional_layer": 1},
    ],
)
def test_same_logits_as_transformers(tmp_path, options) -> None:
    _compare(_hf_model(**options), tmp_path)


def test_pickle_checkpoint_read_with_weights_only(tmp_path) -> None:
    model = _hf_model()
    model.config.save_pretrained(tmp_path)
    torch.save(model.state_dict(), tmp_path / "pytorch_model.bin")
    seg = Segmenter.from_pretrained(tmp_path, device="cpu")
    for name, tensor in model.state_dict().items():
        if name.endswith("decoder.film_mul.weight"):
            torch.testing.assert_close(seg.model.decoder.film_mul.weight, tensor)
    # A pickle that is more than tensors is refused.
    torch.save({"evil": object()}, tmp_path / "pytorch_model.bin")
    with pytest.raises(OSError, match="cannot read weights file"):
        Segmenter.from_pretrained(tmp_path, device="cpu")


def test_one_visual_pass_per_image_and_no_deeper_blocks(tmp_path) -> None:
    _hf_model(extract=(0, 2)).save_pretrained(tmp_path)
    seg = Segmenter.from_pretrained(tmp_path, device="cpu")
    rows = {i: 0 for i in range(4)}
    for i, block in enumerate(seg.model.backbone.blocks):  # ln_1: also on the fused path
        block.ln_1.register_forward_pre_hook(
            lambda m, args, i=i: rows.__setitem__(i, rows[i] + len(args[0]))
        )
    seg.segment([random_rgb(30, 40), random_rgb(20, 20)], [f"class {k}" for k in range(7)])
    assert rows == {0: 2, 1: 2, 2: 2, 3: 0}


def test_unknown_tensors_are_listed(tmp_path) -> None:
    model = _hf_model()
    model.config.save_pretrained(tmp_path)
    state = model.state_dict()
    state["decoder.extra.weight"] = torch.zeros(3)
    torch.save(state, tmp_path / "pytorch_model.bin")
    with pytest.raises(ValueError, match="have no place in clsclip's model: decoder.extra.weight"):
        Segmenter.from_pretrained(tmp_path, device="cpu")
    del state["decoder.extra.weight"], state["decoder.film_add.bias"]
    torch.save(state, tmp_path / "pytorch_model.bin")
    with pytest.raises(ValueError, match="lacks the tensor 'decoder.film_add.bias'"):
        Segmenter.from_pretrained(tmp_path, device="cpu")


def test_converted_model_saves_in_clsclip_format_and_zooms(tmp_path) -> None:
    _hf_model().save_pretrained(tmp_path / "hf")
    seg = Segmenter.from_pretrained(tmp_path / "hf", device="cpu")
    seg.save_pretrained(tmp_path / "ours")
    assert json.loads((tmp_path / "ours" / "config.json").read_text())["model_type"] == (
        "clsclip-clipseg"
    )
    again = Segmenter.from_pretrained(tmp_path / "ours", device="cpu")
    image = random_rgb(50, 70)
    np.testing.assert_allclose(
        again.segment(image, ["dog"]).probs, seg.segment(image, ["dog"]).probs, atol=1e-6
    )
    zoomed = seg.segment(image, ["dog", "cat"], proposals={"dog": [[5, 5, 30, 30]]})
    assert zoomed.probs.shape == (2, 50, 70) and "dog" in zoomed.boxes


def test_config_conversion() -> None:
    config = ClipSegConfig.from_transformers(CLIPSegConfig().to_dict())
    assert config.extract_layers == (3, 6, 9) and config.reduce_dim == 64
    assert config.backbone["vision_cfg"]["patch_size"] == 32
    assert config.backbone["quick_gelu"] is True
    assert config.image_size == 352 and config.prompt_templates == ("{}",)
    bad = CLIPSegConfig().to_dict()
    bad["vision_config"]["hidden_act"] = "relu"
    with pytest.raises(ValueError, match="unsupported CLIPSeg activations"):
        ClipSegConfig.from_transformers(bad)


@pytest.mark.parametrize("complex_head", [True, False])
@pytest.mark.parametrize("patch", [8, 16])
def test_head_as_matrix_products_equals_the_transposed_convolutions(complex_head, patch) -> None:
    from clsclip.model.clipseg_decoder import ClipSegDecoder

    torch.manual_seed(0)
    decoder = ClipSegDecoder(
        width=32, embed_dim=16, num_extracted=1, reduce_dim=12, num_heads=2,
        intermediate_size=24, conditional_layer=0, patch_size=patch, complex_head=complex_head,
    ).double()  # fmt: skip
    patches = torch.randn(3, 12, 5, 7, dtype=torch.float64)
    ours = decoder._run_head(patches)
    scale = (patch // 4) ** 2 if complex_head else patch  # as transformers builds the heads
    assert ours.shape == (3, 1, 5 * scale, 7 * scale)
    torch.testing.assert_close(ours, decoder.head(patches), rtol=0, atol=1e-12)
    # Same through a gradient (training uses the same path).
    patches.requires_grad_(True)
    (grad,) = torch.autograd.grad(decoder._run_head(patches).sum(), patches)
    (expected,) = torch.autograd.grad(decoder.head(patches).sum(), patches)
    torch.testing.assert_close(grad, expected, rtol=0, atol=1e-10)

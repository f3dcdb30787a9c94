"""The navigation mechanism and the shared / per-class split of the ClsCLIP network."""

import pytest
import torch

from clsclip.model import build_model
from tests.conftest import tiny_config, tiny_segmenter


def _record_block_inputs(model):
    """Capture the tokens entering and leaving each visual block."""
    inputs: dict[int, list[torch.Tensor]] = {}
    outputs: dict[int, list[torch.Tensor]] = {}
    handles = []
    for i, block in enumerate(model.backbone.blocks):
        handles.append(
            block.register_forward_pre_hook(
                lambda m, args, i=i: inputs.setdefault(i, []).append(args[0].detach().clone())
            )
        )
        handles.append(
            block.register_forward_hook(
                lambda m, args, out, i=i: outputs.setdefault(i, []).append(out.detach().clone())
            )
        )
    return inputs, outputs, handles


def test_cls_is_replaced_exactly_before_injection_layers() -> None:
    model = tiny_segmenter(injection_layers=(1, 3)).model
    text = model.encode_class_names(["dog", "cat", "tree"])
    inputs, outputs, handles = _record_block_inputs(model)
    with torch.no_grad():
        model.predict_logits(torch.randn(2, 3, 64, 64), text, chunk_size=4)
        projected = model.navigator(text)
    for handle in handles:
        handle.remove()
    # Pairs are ordered image-major: row r is (image r // 3, class r % 3).
    x_in = {i: torch.cat(v) for i, v in inputs.items()}
    x_out = {i: torch.cat(v) for i, v in outputs.items()}
    expected_cls = projected[torch.arange(6) % 3]
    for i in (1, 3):
        torch.testing.assert_close(x_in[i][:, 0], expected_cls)
        torch.testing.assert_close(
            x_in[i][:, 1:], x_out[i - 1][:, 1:].repeat_interleave(3 if i == 1 else 1, dim=0)
        )
    # Other blocks get what the previous block gave: the [CLS] flows freely after injection.
    for i in (2, 4, 5):
        torch.testing.assert_close(x_in[i], x_out[i - 1])
    assert not torch.allclose(x_in[4][:, 0], expected_cls)


def test_shared_blocks_run_once_per_image_whatever_the_class_count() -> None:
    model = tiny_segmenter().model  # injection (2, 3, 4)
    for num_classes in (1, 7):
        text = model.encode_class_names([f"class {k}" for k in range(num_classes)])
        inputs, _, handles = _record_block_inputs(model)
        with torch.no_grad():
            model.predict_logits(torch.randn(3, 3, 64, 64), text, chunk_size=2)
        for handle in handles:
            handle.remove()
        rows = {i: sum(x.shape[0] for x in v) for i, v in inputs.items()}
        assert rows[0] == rows[1] == 3
        assert rows[2] == rows[5] == 3 * num_classes
        # Chunks of 2 pairs bound the batch of the class-dependent blocks.
        assert max(x.shape[0] for x in inputs[2]) <= 2


def test_pairs_equal_one_class_forward() -> None:
    model = tiny_segmenter().model
    text = model.encode_class_names(["dog", "cat", "grass"])
    pixels = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        batched = model.predict_logits(pixels, text, chunk_size=5)
        for b in range(2):
            for k in range(3):
                single = model(pixels[b : b + 1], text[k : k + 1])
                torch.testing.assert_close(batched[b, k], single[0, 0], rtol=1e-5, atol=1e-5)
    assert batched.shape == (2, 3, 8, 8)


def test_classes_change_the_output() -> None:
    model = tiny_segmenter().model
    text = model.encode_class_names(["dog", "cat"])
    with torch.no_grad():
        logits = model.predict_logits(torch.randn(1, 3, 64, 64), text, chunk_size=4)
    assert (logits[0, 0] - logits[0, 1]).abs().max() > 1e-4


def test_text_prior_baseline_without_navigation() -> None:
    model = tiny_segmenter(injection_layers=(), text_prior=True).model
    assert model.navigator is None and model.first_class_block == 6
    text = model.encode_class_names(["dog", "cat"])
    inputs, _, handles = _record_block_inputs(model)
    with torch.no_grad():
        logits = model.predict_logits(torch.randn(2, 3, 64, 64), text, chunk_size=4)
    for handle in handles:
        handle.remove()
    # No block depends on the class: every block runs once per image.
    assert all(sum(x.shape[0] for x in v) == 2 for v in inputs.values())
    assert (logits[:, 0] - logits[:, 1]).abs().max() > 1e-4


def test_any_input_size_with_weights_made_at_another() -> None:
    model = tiny_segmenter().model  # backbone made at 32 px
    text = model.encode_class_names(["dog"])
    with torch.no_grad():
        for size in (32, 64, 120):
            assert model(torch.randn(1, 3, size, size), text).shape == (1, 1, size // 8, size // 8)
    with pytest.raises(ValueError, match="not a multiple of the patch size 8"):
        model.grid_for(60)


def test_injection_layers_out_of_range() -> None:
    with pytest.raises(ValueError, match=r"injection_layers \[6\] are out of range: .* 6 blocks"):
        build_model(tiny_config(injection_layers=(2, 6)))


def test_image_size_not_multiple_of_patch() -> None:
    with pytest.raises(ValueError, match="image size 60 is not a multiple of the patch size 8"):
        build_model(tiny_config(image_size=60))


def test_backbone_is_frozen_and_trainable_parts_are_not() -> None:
    model = tiny_segmenter().model
    assert not any(p.requires_grad for p in model.backbone.parameters())
    assert all(p.requires_grad for p in model.navigator.parameters())
    assert all(p.requires_grad for p in model.decoder.parameters())
    # Gradients reach the projection through the frozen blocks.
    text = model.encode_class_names(["dog"]).detach()
    model(torch.randn(1, 3, 64, 64), text).sum().backward()
    assert model.navigator.proj.weight.grad is not None
    assert model.navigator.proj.weight.grad.abs().sum() > 0


def test_the_no_navigation_baseline_shares_the_whole_vit(tmp_path) -> None:
    """``injection_layers=()`` without a text prior: every visual block runs once per image for
    all classes, the class reaches the decoder as a token, and different classes give
    different masks; the model saves and loads like any other."""
    seg = tiny_segmenter(injection_layers=())
    model = seg.model
    assert model.first_class_block == model.backbone.depth and model.class_token
    inputs, _, handles = _record_block_inputs(model)
    image = torch.randn(1, 3, 64, 64)
    text = seg.encode_classes(["dog", "cat", "sky"])
    logits = model.predict_logits(image, text, chunk_size=16)
    for handle in handles:
        handle.remove()
    assert all(len(calls) == 1 for calls in inputs.values())  # once per image, not per class
    assert logits.shape == (1, 3, 8, 8)
    assert (logits[0, 0] - logits[0, 1]).abs().max() > 1e-4
    folder = seg.save_pretrained(tmp_path / "baseline")
    back = type(seg).from_pretrained(folder, device="cpu")
    torch.testing.assert_close(back.model.predict_logits(image, text, chunk_size=4), logits)

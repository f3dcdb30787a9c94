import pytest
import torch
import torch.nn.functional as F

from clsclip.model.backbone import ClipBackbone, interpolate_pos_embed
from tests.conftest import tiny_segmenter


def test_pos_embed_interpolation_matches_timm() -> None:
    from timm.layers import resample_abs_pos_embed

    torch.manual_seed(0)
    pos = torch.randn(1 + 7 * 7, 16)
    ours = interpolate_pos_embed(pos, (11, 11))
    reference = resample_abs_pos_embed(
        pos[None],
        new_size=[11, 11],
        old_size=[7, 7],
        num_prefix_tokens=1,
        interpolation="bicubic",
        antialias=False,
    )[0]
    assert ours.shape == (1 + 11 * 11, 16)
    torch.testing.assert_close(ours, reference)
    torch.testing.assert_close(ours[0], pos[0])  # the [CLS] position is not interpolated


def test_pos_embed_same_grid_is_identity() -> None:
    pos = torch.randn(1 + 4 * 4, 8)
    assert interpolate_pos_embed(pos, (4, 4)) is pos
    with pytest.raises(ValueError, match="not a square grid"):
        interpolate_pos_embed(torch.randn(1 + 12, 8), (4, 4))


def test_block_by_block_run_matches_open_clip() -> None:
    """At the native size, embed + blocks + ln_post/proj of [CLS] is open_clip's encode_image."""
    backbone = tiny_segmenter().model.backbone
    pixels = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        tokens = backbone.run_blocks(backbone.embed(pixels), 0, backbone.depth)
        ours = backbone.project_tokens(tokens[:, :1])[:, 0]
        reference = backbone.clip.encode_image(pixels)
    torch.testing.assert_close(ours, reference, rtol=1e-5, atol=1e-5)


def test_sizes_are_read_from_the_backbone() -> None:
    backbone = tiny_segmenter().model.backbone
    assert (backbone.width, backbone.depth, backbone.patch_size, backbone.embed_dim) == (
        64,
        6,
        8,
        32,
    )
    assert backbone.embed(torch.zeros(1, 3, 48, 48)).shape == (1, 1 + 6 * 6, 64)


def test_text_vector_is_clip_eot_output() -> None:
    model = tiny_segmenter().model
    with torch.no_grad():
        ours = model.encode_class_names(["dog"])
        ids = model.tokenizer(["a photo of a dog."])
        reference = F.normalize(model.backbone.clip.encode_text(ids), dim=-1)
    torch.testing.assert_close(ours, reference)


def test_short_prompts_are_cut_without_changing_the_text_vector() -> None:
    backbone = tiny_segmenter().model.backbone
    ids = tiny_segmenter().model.tokenizer(["dog", "a very small red bicycle on the grass"])
    with torch.no_grad():
        ours = backbone.encode_text(ids)
        reference = backbone.clip.encode_text(ids)
    torch.testing.assert_close(ours, reference, rtol=1e-5, atol=1e-5)


def test_rejects_non_vit_towers() -> None:
    class NoVisual(torch.nn.Module):
        visual = torch.nn.Identity()

    with pytest.raises(ValueError, match="VisionTransformer"):
        ClipBackbone(NoVisual())


def test_template_words_shared_by_every_prompt_run_once(monkeypatch) -> None:
    from clsclip.model import backbone as backbone_module

    model = tiny_segmenter().model
    backbone = model.backbone.double()
    names = ["dog", "red bicycle", "cat", "a b c d e f g"]
    ids = model.tokenizer([f"a photo of a {n}." for n in names])
    seen = []
    real = backbone_module.run_causal_with_shared_prefix
    monkeypatch.setattr(
        backbone_module,
        "run_causal_with_shared_prefix",
        lambda blocks, x, mask, prefix: (
            seen.append((x.shape[0], prefix)) or real(blocks, x, mask, prefix)
        ),
    )
    with torch.no_grad():
        ours = backbone.encode_text(ids)
        reference = backbone.clip.encode_text(ids)
    assert seen == [(4, 5)]  # start token + "a photo of a"
    torch.testing.assert_close(ours, reference, rtol=0, atol=1e-10)


def test_identical_and_single_prompts_keep_the_pooled_token_outside_the_prefix() -> None:
    model = tiny_segmenter().model
    backbone = model.backbone
    for prompts in (["dog"], ["dog", "dog"], ["a", "a photo"]):
        ids = model.tokenizer(prompts)
        with torch.no_grad():
            torch.testing.assert_close(
                backbone.encode_text(ids), backbone.clip.encode_text(ids), rtol=1e-5, atol=1e-5
            )


def test_several_templates_run_one_batch_each() -> None:
    model = tiny_segmenter(prompt_templates=("a photo of a {}.", "{} in a sketch", "the {}")).model
    names = ["dog", "fire hydrant", "cat"]
    calls = []
    real = model.backbone.encode_text
    with torch.no_grad():
        model.backbone.encode_text = lambda ids: calls.append(len(ids)) or real(ids)
        vectors = model.encode_prompts(names)
        del model.backbone.encode_text
        for i, name in enumerate(names):
            for t, template in enumerate(model.prompt_templates):
                expected = model.backbone.clip.encode_text(model.tokenizer([template.format(name)]))
                torch.testing.assert_close(vectors[i, t], expected[0], rtol=1e-5, atol=1e-5)
    assert calls == [3, 3, 3]
    assert vectors.shape == (3, 3, model.backbone.embed_dim)

"""The training-free dense head against hand-written references of the published formulas."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from clsclip import Segmenter
from clsclip.config import DenseClipConfig
from clsclip.model import build_model
from clsclip.model.dense_attention import neighbourhood_bias
from clsclip.model.dense_clip import window_offsets
from clsclip.model.scores import dense_logits
from clsclip.pipeline.letterbox import letterbox_image
from tests.conftest import TINY_BACKBONE, random_rgb


def dense_config(**fields) -> DenseClipConfig:
    values = {
        "backbone": TINY_BACKBONE,
        "pretrained": None,
        "image_size": 64,
        "window_size": 32,
        "window_stride": 16,
    }
    values.update(fields)
    return DenseClipConfig(**values)


def dense_model(seed: int = 0, **fields):
    torch.manual_seed(seed)
    return build_model(dense_config(**fields)).double()


def _reference_features(model, pixels: torch.Tensor, method: str, std: float) -> torch.Tensor:
    """The methods' formulas written out: open_clip's own blocks but the last, then the last
    block's attention alone (no residual, no MLP), ln_post, proj, unit norm."""
    visual = model.backbone.visual
    x = model.backbone.embed(pixels)
    for block in visual.transformer.resblocks[:-1]:
        x = block(x)
    last = visual.transformer.resblocks[-1]
    attn = last.attn
    heads, width = attn.num_heads, x.shape[-1]
    d = width // heads
    qkv = last.ln_1(x) @ attn.in_proj_weight.T + attn.in_proj_bias
    q, k, v = qkv.split(width, dim=-1)
    grid = pixels.shape[-1] // model.backbone.patch_size
    outs = []
    for h in range(heads):
        qh, kh, vh = (t[..., h * d : (h + 1) * d] for t in (q, k, v))
        if method == "clearclip":
            logits = qh @ qh.transpose(1, 2) / math.sqrt(d)
        else:
            omega = torch.zeros(1 + grid * grid, 1 + grid * grid, dtype=x.dtype)
            for i in range(grid * grid):
                for j in range(grid * grid):
                    dy, dx = i // grid - j // grid, i % grid - j % grid
                    omega[1 + i, 1 + j] = math.exp(-(dy * dy + dx * dx) / (2 * std * std))
            logits = kh @ kh.transpose(1, 2) / math.sqrt(d) + omega
        outs.append(torch.softmax(logits, dim=-1) @ vh)
    out = torch.cat(outs, dim=-1) @ attn.out_proj.weight.T + attn.out_proj.bias
    tokens = visual.ln_post(out[:, 1:]) @ visual.proj
    return F.normalize(tokens, dim=-1)


@pytest.mark.parametrize("method", ["clearclip", "naclip"])
def test_dense_features_equal_the_published_formula(method) -> None:
    model = dense_model(method=method, gaussian_std=1.7)
    pixels = torch.randn(2, 3, 32, 32, dtype=torch.float64)
    with torch.no_grad():
        mine = model.window_features(pixels)
        reference = _reference_features(model, pixels, method, 1.7)
    torch.testing.assert_close(mine, reference, atol=1e-12, rtol=0)


def test_method_none_gives_open_clips_own_tokens() -> None:
    model = dense_model(method="none")
    visual = model.backbone.visual
    pixels = torch.randn(2, 3, 32, 32, dtype=torch.float64)
    visual.output_tokens = True
    with torch.no_grad():
        _, tokens = visual(pixels)
        expected = F.normalize(tokens @ visual.proj, dim=-1)
        torch.testing.assert_close(model.window_features(pixels), expected, atol=1e-12, rtol=0)


def test_neighbourhood_bias_matches_its_definition_at_the_borders() -> None:
    std = 1.5
    bias = neighbourhood_bias((3, 4), std, dtype=torch.float64, device=torch.device("cpu"))
    assert bias.shape == (13, 13)
    assert (bias[0] == 0).all() and (bias[:, 0] == 0).all()  # [CLS] gets no neighbourhood
    torch.testing.assert_close(torch.diagonal(bias)[1:], torch.ones(12, dtype=torch.float64))
    corner, opposite = 1 + 0, 1 + 11  # (0, 0) and (2, 3)
    assert bias[corner, opposite] == pytest.approx(math.exp(-(2**2 + 3**2) / (2 * std**2)))
    assert bias[1 + 4, 1 + 0] == pytest.approx(math.exp(-1 / (2 * std**2)))  # one row apart
    assert torch.equal(bias, bias.T)


def test_window_offsets_follow_the_references() -> None:
    assert window_offsets(64, 32, 16) == [0, 16, 32]
    assert window_offsets(64, 32, 24) == [0, 24, 32]  # the last window ends at the border
    assert window_offsets(32, 32, 16) == [0]
    assert window_offsets(16, 32, 16) == [0]


def test_one_window_equals_the_single_pass() -> None:
    model = dense_model(image_size=32, window_size=32)
    pixels = torch.randn(3, 3, 32, 32, dtype=torch.float64)
    with torch.no_grad():
        (views,) = model.encode_views(pixels)
        single = model.window_features(pixels)
    torch.testing.assert_close(views, single, atol=0, rtol=0)


@pytest.mark.parametrize("stride", [16, 24, 8])
def test_overlapping_windows_are_averaged_per_cell(stride) -> None:
    model = dense_model(image_size=64, window_size=32, window_stride=stride)
    pixels = torch.randn(2, 3, 64, 64, dtype=torch.float64)
    with torch.no_grad():
        (views,) = model.encode_views(pixels)
        total = torch.zeros(2, 8, 8, views.shape[-1], dtype=torch.float64)
        count = torch.zeros(8, 8, 1, dtype=torch.float64)
        for y in window_offsets(64, 32, stride):
            for x in window_offsets(64, 32, stride):
                feats = model.window_features(pixels[:, :, y : y + 32, x : x + 32])
                total[:, y // 8 : y // 8 + 4, x // 8 : x // 8 + 4] += feats.view(2, 4, 4, -1)
                count[y // 8 : y // 8 + 4, x // 8 : x // 8 + 4] += 1
    torch.testing.assert_close(views, (total / count).view(2, 64, -1), atol=1e-12, rtol=0)


@pytest.mark.parametrize("size", [(37, 53), (97, 31), (20, 140), (64, 64), (1, 3)])
def test_odd_tall_and_wide_images(size) -> None:
    torch.manual_seed(0)
    seg = Segmenter.from_config(dense_config(method="naclip"), device="cpu")
    result = seg.segment(random_rgb(*size), ["dog", "cat"])
    assert result.label_map.shape == size and result.low_res_logits.shape == (2, 8, 8)
    assert np.isfinite(result.probs).all()


def test_the_visual_tower_runs_once_per_window_whatever_the_classes() -> None:
    torch.manual_seed(0)
    seg = Segmenter.from_config(dense_config(method="clearclip"), device="cpu")
    calls = []
    handle = seg.model.backbone.blocks[0].register_forward_pre_hook(
        lambda module, args: calls.append(args[0].shape[0])
    )
    image = random_rgb(40, 50)
    seg.segment(image, ["dog"])
    one = list(calls)
    calls.clear()
    seg.segment(image, [f"class {i}" for i in range(40)])
    handle.remove()
    assert calls == one == [9]  # one pass of the image's 3 x 3 windows, for 1 or 40 classes


def test_classes_compete_as_the_references_score_them() -> None:
    scores = torch.randn(2, 5, 3, 4, generator=torch.Generator().manual_seed(1)) * 3
    no_background = dense_logits(scores, 5)
    torch.testing.assert_close(
        torch.sigmoid(no_background), scores.softmax(dim=1), atol=1e-6, rtol=0
    )
    with_background = dense_logits(scores, 3)  # 3 classes, 2 background prompts
    best = scores.argmax(dim=1)
    labels = torch.where(with_background.amax(dim=1) > 0, with_background.argmax(dim=1) + 1, 0)
    expected = torch.where(best < 3, best + 1, 0)
    assert torch.equal(labels, expected)  # argmax over classes and background prompts
    assert torch.isfinite(dense_logits(torch.zeros(1, 1, 2, 2), 1)).all()  # one class: certain


def test_background_prompts_make_a_background() -> None:
    torch.manual_seed(0)
    seg = Segmenter.from_config(dense_config(background_prompts=("sky", "wall")), device="cpu")
    image = random_rgb(40, 40)
    result = seg.segment(image, ["dog"])
    model = seg.model
    with torch.inference_mode():
        text = torch.cat([seg.encode_classes(["dog"]), model.background_vectors(seg.device)])
        view, _ = letterbox_image(Image.fromarray(image), 64, model.image_mean, model.image_std)
        (features,) = model.encode_views(view[None])
        scores = model.decode_rows([features.repeat(3, 1, 1)], text, (8, 8))
    expected = scores[0] - scores[1:].amax(dim=0)
    torch.testing.assert_close(result.low_res_logits[0], expected.clamp(-50, 50), atol=1e-5, rtol=0)


def test_bad_configurations_are_named() -> None:
    with pytest.raises(
        ValueError,
        match=r"unknown method 'maskclip'; choose one of \['clearclip', 'naclip', 'none'\]",
    ):
        dense_config(method="maskclip")
    with pytest.raises(
        ValueError, match="window_size 4 px must be a multiple of the backbone's 8 px"
    ):
        build_model(dense_config(window_size=4, window_stride=4))
    with pytest.raises(ValueError, match="window_stride 12 px must be a multiple"):
        build_model(dense_config(window_stride=12))
    resnet = {
        "embed_dim": 32,
        "vision_cfg": {"image_size": 64, "layers": [1, 1, 1, 1], "width": 16},
        "text_cfg": TINY_BACKBONE["text_cfg"],
    }
    with pytest.raises(ValueError, match="builds as a ResNet image tower; clsclip needs a ViT"):
        dense_config(backbone=resnet)
    with pytest.raises(
        ValueError, match="image tower is open_clip's VisionTransformer, got ModifiedResNet"
    ):
        build_model(dense_config(backbone="RN50", image_size=224))
    with pytest.raises(ValueError, match="duplicate class name"):
        dense_config(background_prompts=("sky", "Sky"))
    # cells no window covers gave NaN probabilities and empty masks with a 200
    with pytest.raises(ValueError, match="window_stride 48 px is larger than the window 32 px"):
        dense_config(window_size=32, window_stride=48)
    with pytest.raises(ValueError, match="gaussian_std must be at least 0.1 patches"):
        dense_config(gaussian_std=1e-300)  # 0 / 0 in the neighbourhood: NaN


def test_imagenet_templates_are_the_80_of_clip() -> None:
    config = dense_config(prompt_templates=("imagenet",))
    assert len(config.prompt_templates) == 80
    assert config.prompt_templates[0] == "a bad photo of a {}."
    assert DenseClipConfig.from_dict(config.to_dict()) == config

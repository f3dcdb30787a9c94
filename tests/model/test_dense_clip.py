"""The training-free dense head against hand-written references of the published formulas."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from clsclip import Segmenter
from clsclip.config import DenseClipConfig
from clsclip.model import build_model
from clsclip.model.dense_attention import neighbourhood_bias
from clsclip.model.scores import softmax_logits
from clsclip.model.windows import patch_padding, sliding_windows
from tests.conftest import TINY_BACKBONE, random_rgb


def dense_config(**fields) -> DenseClipConfig:
    values = {
        "backbone": TINY_BACKBONE,
        "pretrained": None,
        "image_size": 64,
        "window_size": 32,
        "window_stride": 16,
        "prompt_templates": ("a photo of a {}.",),
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


def test_sliding_windows_follow_mmseg() -> None:
    assert sliding_windows(64, 64, 32, 16) == [
        (y, y + 32, x, x + 32) for y in (0, 16, 32) for x in (0, 16, 32)
    ]
    assert sliding_windows(40, 64, 32, 24) == [  # the last window ends at the border
        (0, 32, 0, 32), (0, 32, 24, 56), (0, 32, 32, 64),
        (8, 40, 0, 32), (8, 40, 24, 56), (8, 40, 32, 64),
    ]  # fmt: skip
    assert sliding_windows(20, 100, 32, 16)[:2] == [(0, 20, 0, 32), (0, 20, 16, 48)]
    assert sliding_windows(37, 53, 0, 16) == [(0, 37, 0, 53)]  # window 0: the whole image
    assert patch_padding(20, 30, 8) == (1, 1, 2, 2)
    assert patch_padding(21, 29, 8) == (1, 2, 1, 2)  # the smaller half first, as ClearCLIP


def test_one_window_equals_the_single_pass() -> None:
    model = dense_model(image_size=32, window_size=32)
    pixels = torch.randn(3, 3, 32, 32, dtype=torch.float64)
    with torch.no_grad():
        (views,) = model.encode_views(pixels)
        single = model.window_features(pixels)
    torch.testing.assert_close(views[:, 0], single, atol=0, rtol=0)


@pytest.mark.parametrize("stride", [16, 24, 8, 13])
def test_overlapping_windows_are_averaged_per_pixel(stride) -> None:
    model = dense_model(method="naclip", window_size=32, window_stride=stride)
    pixels = torch.randn(2, 3, 48, 64, dtype=torch.float64)
    text = F.normalize(torch.randn(2, 32, dtype=torch.float64), dim=-1)
    with torch.no_grad():
        views = model.encode_views(pixels)
        pairs = torch.tensor([[0, 0], [1, 1]])
        rows = model.decode_rows([views[0][pairs[:, 0]]], text[pairs[:, 1]], (48, 64))
        total = torch.zeros(2, 48, 64, dtype=torch.float64)
        count = torch.zeros(48, 64, dtype=torch.float64)
        for y0, y1, x0, x1 in sliding_windows(48, 64, 32, stride):
            feats = model.window_features(pixels[:, :, y0:y1, x0:x1])  # 2 x 16 x E
            cos = torch.einsum("vne,ve->vn", feats, text).view(2, 1, 4, 4)
            up = F.interpolate(cos, size=(32, 32), mode="bilinear", align_corners=False)
            total[:, y0:y1, x0:x1] += up[:, 0]
            count[y0:y1, x0:x1] += 1
    torch.testing.assert_close(rows, total / count * 40.0, atol=1e-12, rtol=0)


@pytest.mark.parametrize("size", [(37, 53), (97, 31), (20, 140), (64, 64), (1, 3)])
def test_odd_tall_and_wide_images(size) -> None:
    torch.manual_seed(0)
    seg = Segmenter.from_config(dense_config(method="naclip"), device="cpu")
    result = seg.segment(random_rgb(*size), ["dog", "cat"])
    assert result.label_map.shape == size
    assert np.isfinite(result.probs).all()
    # the short side resized to 64 (long side kept in ratio), no padding, scores per pixel
    short = 64 / min(size)
    expected = (int(size[0] * short + 0.5), int(size[1] * short + 0.5))
    assert result.low_res_logits.shape[1:] in (expected, size)  # size: PAMR at the image's


def test_the_visual_tower_runs_once_per_window_whatever_the_classes() -> None:
    torch.manual_seed(0)
    seg = Segmenter.from_config(dense_config(method="clearclip"), device="cpu")
    calls = []
    handle = seg.model.backbone.blocks[0].register_forward_pre_hook(
        lambda module, args: calls.append(args[0].shape[0])
    )
    image = random_rgb(64, 80)  # 64 x 80: 3 x 4 windows of 32 every 16
    seg.segment(image, ["dog"])
    one = list(calls)
    calls.clear()
    seg.segment(image, [f"class {i}" for i in range(40)])
    handle.remove()
    assert calls == one == [12]  # one pass of the image's 3 x 4 windows, for 1 or 40 classes


def test_classes_compete_as_the_references_score_them() -> None:
    scores = torch.randn(7, 3, 4, generator=torch.Generator().manual_seed(1)) * 3
    owners = [0, 1, 1, 2, 3]  # class 1 has two prompt rows
    logits, floor = softmax_logits(scores[:5], owners, 4, scores[5:])  # 2 background rows
    softmax = scores.softmax(dim=0)
    expected = torch.stack([softmax[0], softmax[1:3].amax(0), softmax[3], softmax[4]])
    torch.testing.assert_close(torch.sigmoid(logits), expected, atol=1e-6, rtol=0)
    assert floor is not None
    torch.testing.assert_close(torch.sigmoid(floor), softmax[5:].amax(0), atol=1e-6, rtol=0)
    alone, none = softmax_logits(torch.zeros(1, 2, 2), [0], 1, torch.zeros(0, 2, 2))
    assert none is None and torch.isfinite(alone).all()  # one class, no background: certain


def test_background_prompts_make_a_background() -> None:
    torch.manual_seed(0)
    seg = Segmenter.from_config(dense_config(background_prompts=("sky", "wall")), device="cpu")
    result = seg.segment(random_rgb(40, 40), ["dog", "cat"])
    probs = result.probs
    labels = result.label_map
    # a pixel is a class's where that class beats the other and the best background prompt
    assert ((labels == 0) | (probs.max(axis=0) > 0)).all()
    background = 1.0 - probs.sum(axis=0)  # what the two background prompts hold together
    assert (background >= -1e-5).all() and (labels == 0).any()
    assert ((labels > 0) <= (probs.max(axis=0) >= 1e-6)).all()


def test_bad_configurations_are_named() -> None:
    with pytest.raises(
        ValueError,
        match=r"unknown method 'maskclip'; choose one of "
        r"\['clearclip', 'naclip', 'scclip', 'none'\]",
    ):
        dense_config(method="maskclip")
    with pytest.raises(ValueError, match="window_size 4 px is smaller than one 8 px patch"):
        build_model(dense_config(window_size=4, window_stride=4))
    with pytest.raises(ValueError, match=r"unknown refine 'crf'; choose one of \['none', 'pamr'\]"):
        dense_config(refine="crf")
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

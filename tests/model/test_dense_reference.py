"""The training-free family end to end against a plain transcription of the references'
inference (ClearCLIP @ad68a40 ``clearclip_segmentor.py``, NACLIP @0cac3a6 ``naclip.py`` and
``pamr.py``, with mmseg's resize and slide inference), on identical tiny random weights, in
float64: the probabilities and label maps `Segmenter.segment` gives are the references'.

The transcription below is written from the references' published algorithm, step by step as
they run it, and shares no code with clsclip's model: open_clip's modules are driven by hand.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from clsclip import Segmenter
from clsclip.config import DenseClipConfig
from tests.conftest import TINY_BACKBONE, random_rgb

MEAN = (0.48145466, 0.4578275, 0.40821073)
STD = (0.26862954, 0.26130258, 0.27577711)


def mmcv_rescale(height: int, width: int, short: int, long: int = 2048) -> tuple[int, int]:
    """mmcv.imrescale's size for ``scale=(long, short)``, keep_ratio=True."""
    factor = min(long / max(height, width), short / min(height, width))
    return int(height * factor + 0.5), int(width * factor + 0.5)


def resize_uint8(image: np.ndarray, size: tuple[int, int]) -> torch.Tensor:
    """Bilinear resize of an 8-bit image without antialiasing, rounded back to 8 bits (what
    cv2.resize INTER_LINEAR returns, up to its fixed-point rounding): ``1 x 3 x h x w``."""
    x = torch.from_numpy(image).permute(2, 0, 1)[None].double()
    if size != image.shape[:2]:
        x = F.interpolate(x, size=size, mode="bilinear", align_corners=False)
        x = torch.floor(x + 0.5 + 1e-6).clamp(0, 255)  # halves up, as OpenCV's fixed point
    return x


def reference_pos_encoding(pos: torch.Tensor, rows: int, cols: int) -> torch.Tensor:
    """``interpolate_pos_encoding`` of both references."""
    n = pos.shape[0] - 1
    if rows * cols == n and rows == cols:
        return pos
    side = int(math.sqrt(n))
    patch = pos[1:].reshape(1, side, side, -1).permute(0, 3, 1, 2)
    patch = F.interpolate(
        patch,
        scale_factor=((rows + 0.1) / side, (cols + 0.1) / side),
        mode="bicubic",
        align_corners=False,
        recompute_scale_factor=False,
    )
    assert patch.shape[-2:] == (rows, cols)
    return torch.cat([pos[:1], patch.permute(0, 2, 3, 1).reshape(rows * cols, -1)])


def reference_tokens(clip, crop: torch.Tensor, method: str, std: float) -> torch.Tensor:
    """The references' modified ``VisionTransformer.forward`` with ``return_all``: patch
    features ``N x E`` (not normalised) of one crop ``1 x 3 x h x w``."""
    visual = clip.visual
    patch = visual.conv1.kernel_size[0]
    rows, cols = crop.shape[-2] // patch, crop.shape[-1] // patch
    x = visual.conv1(crop).reshape(1, visual.conv1.out_channels, -1).permute(0, 2, 1)
    x = torch.cat([visual.class_embedding.reshape(1, 1, -1), x], dim=1)
    x = x + reference_pos_encoding(visual.positional_embedding, rows, cols)
    x = visual.ln_pre(x)
    for block in visual.transformer.resblocks[:-1]:
        x = block(x)
    last = visual.transformer.resblocks[-1]
    attn = last.attn
    heads, width = attn.num_heads, x.shape[-1]
    d = width // heads
    q, k, v = F.linear(last.ln_1(x), attn.in_proj_weight, attn.in_proj_bias).chunk(3, dim=-1)
    count = x.shape[1]
    omega = torch.zeros(count, count, dtype=x.dtype)
    if method == "naclip":
        for i in range(rows * cols):
            for j in range(rows * cols):
                dy, dx = i // cols - j // cols, i % cols - j % cols
                omega[1 + i, 1 + j] = math.exp(-(dy * dy + dx * dx) / (2 * std * std))
    outs = []
    for h in range(heads):
        qh, kh, vh = (t[0, :, h * d : (h + 1) * d] for t in (q, k, v))
        if method == "clearclip":
            weights = torch.softmax(qh @ qh.T * d**-0.5, dim=-1)
        else:
            weights = torch.softmax(kh @ kh.T * d**-0.5 + omega, dim=-1)
        outs.append(weights @ vh)
    out = attn.out_proj(torch.cat(outs, dim=-1))  # no residual, no LayerScale, no MLP
    return (visual.ln_post(out) @ visual.proj)[1:]


def reference_scclip_tokens(clip, crop: torch.Tensor, layers) -> torch.Tensor:
    """SC-CLIP's ``VisionTransformer.forward`` (``return_all``) with sklearn's LOF (the
    paper's; the repository's torch LOF approximates it): patch features ``N x E``."""
    from sklearn.neighbors import LocalOutlierFactor

    pre, post, start, end = layers
    visual = clip.visual
    patch = visual.conv1.kernel_size[0]
    rows, cols = crop.shape[-2] // patch, crop.shape[-1] // patch
    x = visual.conv1(crop).reshape(1, visual.conv1.out_channels, -1).permute(0, 2, 1)
    x = torch.cat([visual.class_embedding.reshape(1, 1, -1), x], dim=1)
    x = visual.ln_pre(x + reference_pos_encoding(visual.positional_embedding, rows, cols))
    feats = []
    for block in visual.transformer.resblocks[:-1]:
        x = block(x)
        feats.append(x[0])
    cls = x[0, :1]
    tokens = x[0, 1:]
    count = tokens.shape[0]
    lof = LocalOutlierFactor(n_neighbors=min(30, count - 1), contamination=0.05)
    bad = set(np.flatnonzero(lof.fit_predict(tokens.numpy()) == -1).tolist())

    def mean_interpolation(t):
        out = t.clone()
        for i in bad:
            r, c = divmod(i, cols)
            near = [(r + dr) * cols + c + dc for dr in (-1, 0, 1) for dc in (-1, 0, 1)
                    if (dr or dc) and 0 <= r + dr < rows and 0 <= c + dc < cols
                    and (r + dr) * cols + c + dc not in bad]  # fmt: skip
            if near:
                out[i] = t[near].mean(dim=0)
        return out

    def unit_similarity(t):
        t = t / t.norm(dim=-1, keepdim=True)
        return t @ t.T

    def aggregate(t, sims):
        sims = sims.clone()
        sims[sims < 0.4] = 0.0
        return (sims / (sims.sum(dim=-1, keepdim=True) + 1e-6)) @ t

    last = visual.transformer.resblocks[-1]
    attn = last.attn
    heads, width = attn.num_heads, tokens.shape[-1]
    d = width // heads

    def custom_attn(t, mid):
        _, k, v = F.linear(last.ln_1(t), attn.in_proj_weight, attn.in_proj_bias).chunk(3, -1)
        mid = (mid - mid.mean()) * 3.0
        mid[mid < 0.0] = float("-inf")
        outs = []
        for h in range(heads):
            kh, vh = k[:, h * d : (h + 1) * d], v[:, h * d : (h + 1) * d]
            weights = (torch.softmax(mid, -1) + torch.softmax(kh @ kh.T * d**-0.5, -1)) / 2
            outs.append(weights @ vh)
        return attn.out_proj(torch.cat(outs, dim=-1))

    x = mean_interpolation(tokens)
    mid = unit_similarity(mean_interpolation(feats[pre][1:]))
    x = aggregate(x, mid)
    x = custom_attn(x, mid) + 0.3 * cls
    after = unit_similarity(feats[post][1:])
    x = aggregate(x, after)
    fused = sum(feats[start:end])
    x = x + aggregate(custom_attn(fused[1:], mid) + 0.3 * fused[:1], after)
    return visual.ln_post(x) @ visual.proj


def reference_pamr(image: torch.Tensor, mask: torch.Tensor, steps: int, dilations) -> torch.Tensor:
    """NACLIP's ``pamr.py`` (PAMR, Araslanov & Roth) with its 3 x 3 dilated kernels."""

    def kernels(ids, sign_centre):
        weight = torch.zeros(len(ids), 1, 3, 3, dtype=image.dtype)
        for n, (a, b) in enumerate(ids):
            if sign_centre:
                weight[n, 0, 1, 1] = 1
                weight[n, 0, a, b] = -1
            else:
                weight[n, 0, a, b] = 1
        return weight

    eight = [(0, 0), (0, 1), (0, 2), (1, 0), (1, 2), (2, 0), (2, 1), (2, 2)]
    nine = [(0, 0), (0, 1), (0, 2), (1, 0), (1, 1), (1, 2), (2, 0), (2, 1), (2, 2)]

    def local(x, weight):
        b, k, h, w = x.shape
        x = x.reshape(b * k, 1, h, w)
        parts = [
            F.conv2d(F.pad(x, [d] * 4, mode="replicate"), weight, dilation=d) for d in dilations
        ]
        return torch.cat(parts, dim=1).reshape(b, k, -1, h, w)

    x_std = local(image, kernels(nine, False)).std(2, keepdim=True)
    x = -local(image, kernels(eight, True)).abs() / (1e-8 + 0.1 * x_std)
    x = torch.softmax(x.mean(1, keepdim=True), 2)
    for _ in range(steps):
        mask = (local(mask, kernels(eight, False)) * x).sum(2)
    return mask


def reference_inference(clip, queries, owners, image, s):
    """mmseg + the references' segmentor: ``(probs C x H x W, labels H x W)`` where class 0 is
    the background's line when there is one."""
    height, width = image.shape[:2]
    resized = resize_uint8(image, mmcv_rescale(height, width, s["short"]))
    mean = torch.tensor(MEAN, dtype=torch.float64).view(1, 3, 1, 1) * 255
    std = torch.tensor(STD, dtype=torch.float64).view(1, 3, 1, 1) * 255
    img = (resized - mean) / std
    patch = clip.visual.conv1.kernel_size[0]

    def forward_feature(crop):
        if s["method"] == "scclip":
            from clsclip.model.scclip import scclip_layers

            depth = len(clip.visual.transformer.resblocks)
            feats = reference_scclip_tokens(clip, crop, scclip_layers(depth))
        else:
            feats = reference_tokens(clip, crop, s["method"], 5.0)
        feats = feats / feats.norm(dim=-1, keepdim=True)
        logits = feats @ queries.T
        rows, cols = crop.shape[-2] // patch, crop.shape[-1] // patch
        logits = logits.permute(1, 0).reshape(1, -1, rows, cols)
        return F.interpolate(logits, size=crop.shape[-2:], mode="bilinear", align_corners=False)

    h_img, w_img = img.shape[-2:]
    if s["crop"] > 0:
        crop, stride = s["crop"], s["stride"]
        h_grids = max(h_img - crop + stride - 1, 0) // stride + 1
        w_grids = max(w_img - crop + stride - 1, 0) // stride + 1
        preds = img.new_zeros((1, queries.shape[0], h_img, w_img))
        count = img.new_zeros((1, 1, h_img, w_img))
        for h_idx in range(h_grids):
            for w_idx in range(w_grids):
                y1, x1 = h_idx * stride, w_idx * stride
                y2, x2 = min(y1 + crop, h_img), min(x1 + crop, w_img)
                y1, x1 = max(y2 - crop, 0), max(x2 - crop, 0)
                part = img[:, :, y1:y2, x1:x2]
                ph, pw = part.shape[2:]
                pad = (0, 0, 0, 0)
                if s["method"] == "clearclip":  # compute_padsize
                    lr, tb = (patch - pw % patch) % patch, (patch - ph % patch) % patch
                    pad = (lr // 2, lr - lr // 2, tb // 2, tb - tb // 2)
                if any(pad):
                    part = F.pad(part, pad)
                logit = forward_feature(part)
                if any(pad):
                    logit = logit[:, :, pad[2] : pad[2] + ph, pad[0] : pad[0] + pw]
                preds += F.pad(logit, (x1, w_img - x2, y1, h_img - y2))
                count[:, :, y1:y2, x1:x2] += 1
        logits = preds / count
    else:
        logits = forward_feature(img)
    logits = F.interpolate(logits, size=(height, width), mode="bilinear", align_corners=False)
    if s.get("pamr"):
        full = F.interpolate(img, size=(height, width), mode="bilinear", align_corners=False)
        logits = reference_pamr(full, logits, 10, (8, 16))
    probs = torch.softmax(logits[0] * s["scale"], dim=0)
    index = torch.as_tensor(owners)
    classes = int(index.max()) + 1
    if classes != len(owners):
        one_hot = F.one_hot(index).T.view(classes, len(owners), 1, 1)
        probs = (probs[None] * one_hot).max(1)[0]
    if s.get("area"):  # SC-CLIP's area_thd: small classes' probabilities zeroed
        votes = F.one_hot(probs.argmax(0), classes).sum((0, 1))[1:]
        probs[1:] *= (votes > s["area"] * votes.sum()).to(probs.dtype)[:, None, None]
    labels = probs.argmax(0)
    labels[probs.max(0)[0] < s["thd"]] = 0
    return probs, labels


SETTINGS = {
    # The references' settings scaled to a 4 x 4-patch tiny ViT (8 px patches, 32 px native).
    "clearclip": {"method": "clearclip", "short": 44, "crop": 40, "stride": 20, "scale": 50.0,
                  "thd": 0.5},
    "clearclip-no-background": {"method": "clearclip", "short": 44, "crop": 40, "stride": 20,
                                "scale": 50.0, "thd": 0.0, "background": ()},
    "naclip": {"method": "naclip", "short": 36, "crop": 32, "stride": 16, "scale": 40.0,
               "thd": 0.1},
    "naclip-whole-pamr": {"method": "naclip", "short": 36, "crop": 0, "stride": 16,
                          "scale": 40.0, "thd": 0.1, "pamr": True},
    # windows and strides that are not whole patches (ViT-B/32 at NACLIP's 224 / 112): ClearCLIP
    # pads each window, NACLIP's patch embedding drops the remainder
    "clearclip-odd-windows": {"method": "clearclip", "short": 44, "crop": 36, "stride": 14,
                              "scale": 50.0, "thd": 0.0},
    "naclip-odd-windows": {"method": "naclip", "short": 44, "crop": 36, "stride": 14,
                           "scale": 40.0, "thd": 0.0},
    # SC-CLIP at 6 x 6-patch windows (its LOF takes 30 neighbours), VOC21's area threshold
    "scclip": {"method": "scclip", "short": 48, "crop": 48, "stride": 24, "scale": 50.0,
               "thd": 0.15, "area": 0.1},
}  # fmt: skip

SIZES = [(75, 100), (100, 75), (30, 100), (45, 45), (21, 13)]
"""Wide, tall, very wide (its long side capped), square, and smaller than a window."""


def _segmenter(s) -> Segmenter:
    background = s.get("background", ("background", "sky"))
    config = DenseClipConfig(
        backbone=TINY_BACKBONE, pretrained=None, method=s["method"], image_size=s["short"],
        window_size=s["crop"], window_stride=s["stride"], threshold=s["thd"],
        background_prompts=background, refine="pamr" if s.get("pamr") else "none",
        area_threshold=s.get("area"), logit_scale=s["scale"],
    )  # fmt: skip
    torch.manual_seed(3)
    segmenter = Segmenter.from_config(config, device="cpu")
    segmenter.backend.model.double()
    segmenter.backend._dtype = torch.float64
    return segmenter


@pytest.mark.parametrize("name", list(SETTINGS))
def test_segment_is_the_references_inference(name, monkeypatch) -> None:
    s = SETTINGS[name]
    monkeypatch.setattr("clsclip.geometry.MAX_LONG_SIDE", 2048)
    segmenter = _segmenter(s)
    names = ["cat", "dog", "tree"]
    background = list(segmenter.config.background_prompts)
    model = segmenter.backend.model
    with torch.inference_mode():
        class_vectors = model.encode_class_names(names).double()
        bg_vectors = model.encode_class_names(background).double() if background else None
    queries = class_vectors if bg_vectors is None else torch.cat([bg_vectors, class_vectors])
    owners = list(range(len(names)))
    if background:  # the background's line first, its names all class 0
        owners = [0] * len(background) + [k + 1 for k in owners]
    shift = 1 if background else 0
    clip = model.backbone.clip
    for i, (height, width) in enumerate(SIZES):
        image = random_rgb(height, width, seed=i)
        with torch.inference_mode():
            probs, labels = reference_inference(clip, queries, owners, image, s)
        result = segmenter.segment(image, names)
        ours = np.stack([result.prob(n) for n in names])
        kept = [k for k, t in enumerate(result.effective_thresholds()) if t < 1.0]
        # a class the area threshold drops: the reference zeroes its probabilities, clsclip
        # keeps them and empties its mask (the label maps are the same)
        np.testing.assert_allclose(ours[kept], probs[shift:].numpy()[kept], atol=1e-5,
                                   err_msg=f"{height}x{width}")  # fmt: skip
        expected = labels.numpy() + (1 - shift) if background else labels.numpy() + 1
        agree = (result.label_map == expected).mean()
        assert agree >= 0.9995, f"{name} {height}x{width}: labels agree on {agree:.4%}"


def test_the_way_in_is_opencvs_bilinear_resize() -> None:
    """The short-side resize equals cv2.resize INTER_LINEAR (what mmcv runs) within one 8-bit
    level: OpenCV interpolates in 11-bit fixed point, so about one value in eight is one level
    off (docs/training-free.md names the deviation)."""
    cv2 = pytest.importorskip("cv2")
    from clsclip.geometry import Letterbox
    from clsclip.pipeline.letterbox import short_side_pixels

    for i, (height, width) in enumerate([(375, 500), (500, 375), (333, 1000), (97, 61)]):
        image = random_rgb(height, width, seed=i)
        box = Letterbox.short_side((height, width), 448)
        assert box.resized_size == mmcv_rescale(height, width, 448)
        expected = cv2.resize(image, box.resized_size[::-1], interpolation=cv2.INTER_LINEAR)
        ours = short_side_pixels(torch.from_numpy(image).permute(2, 0, 1)[None], box,
                                 (0.0, 0.0, 0.0), (1.0, 1.0, 1.0))  # fmt: skip
        ours = (ours[0].permute(1, 2, 0) * 255).round().numpy().astype(int)
        difference = np.abs(ours - expected.astype(int))
        assert difference.max() <= 1 and (difference == 0).mean() > 0.8


def test_a_checkpoint_file_is_the_pretrained_backbone(tmp_path) -> None:
    """``pretrained=<file>``: a state dict saved from open_clip loads bit-exact, with and
    without the training checkpoint's nesting; a wrong architecture is a one-line error."""
    import open_clip
    from safetensors.torch import save_file

    torch.manual_seed(11)
    clip = open_clip.CLIP(**TINY_BACKBONE)
    state = clip.state_dict()
    torch.save(state, tmp_path / "open_clip_model.bin")
    torch.save({"epoch": 3, "state_dict": {f"module.{k}": v for k, v in state.items()}},
               tmp_path / "epoch_3.pt")  # fmt: skip
    save_file({k: v.contiguous() for k, v in state.items()}, tmp_path / "model.safetensors")
    for name in ("open_clip_model.bin", "epoch_3.pt", "model.safetensors"):
        config = DenseClipConfig(backbone=TINY_BACKBONE, pretrained=str(tmp_path / name),
                                 image_size=44)  # fmt: skip
        loaded = Segmenter.from_config(config, device="cpu").backend.model.backbone.clip
        for key, value in loaded.state_dict().items():
            assert torch.equal(value, state[key]), (name, key)
    other = dict(TINY_BACKBONE, vision_cfg=dict(TINY_BACKBONE["vision_cfg"], layers=5))
    with pytest.raises(ValueError, match=r"is not a checkpoint of this backbone: 0 missing keys "
                       r"\[\], 12 unexpected keys \['visual.transformer.resblocks.5"):  # fmt: skip
        Segmenter.from_config(DenseClipConfig(backbone=other, pretrained=str(
            tmp_path / "open_clip_model.bin")), device="cpu")  # fmt: skip
    with pytest.raises(FileNotFoundError, match="pretrained checkpoint file not found"):
        Segmenter.from_config(DenseClipConfig(backbone=TINY_BACKBONE, pretrained=str(
            tmp_path / "missing.bin")), device="cpu")  # fmt: skip


def test_presets_are_the_references_configs() -> None:
    naclip = DenseClipConfig.preset("naclip-voc21", backbone=TINY_BACKBONE, pretrained=None)
    assert (naclip.image_size, naclip.window, naclip.threshold, naclip.refine) == (
        336,
        0,
        0.1,
        "pamr",
    )
    assert len(naclip.background_prompts) == 26 and len(naclip.prompt_templates) == 80
    clear = DenseClipConfig.preset("clearclip-voc21", backbone=TINY_BACKBONE, pretrained=None)
    assert (clear.image_size, clear.window, clear.stride, clear.threshold, clear.scale) == (
        448,
        448,
        224,
        0.5,
        50.0,
    )
    assert clear.background_prompts == ("background",) and clear.refine == "none"
    city = DenseClipConfig.preset("naclip-cityscapes", backbone=TINY_BACKBONE, pretrained=None)
    assert (city.image_size, city.window, city.stride, city.background_prompts) == (
        560,
        224,
        112,
        (),
    )
    assert DenseClipConfig.from_dict(naclip.to_dict()) == naclip
    with pytest.raises(ValueError, match="unknown preset 'naclip-voc'; choose one of"):
        DenseClipConfig.preset("naclip-voc")


def test_the_way_in_is_the_same_in_every_process() -> None:
    """Decoding workers run torch on one thread: the resized pixels must not depend on it (a
    half computed as 12.4999999 on one thread count rounded down and gave another mask)."""
    from PIL import Image

    from clsclip.pipeline.letterbox import letterbox_image

    threads = torch.get_num_threads()
    try:
        for seed in range(4):
            image = Image.fromarray(random_rgb(45, 70, seed))
            torch.set_num_threads(1)
            one, _ = letterbox_image(image, 64, MEAN, STD, "short-side")
            torch.set_num_threads(max(2, threads))
            many, _ = letterbox_image(image, 64, MEAN, STD, "short-side")
            assert torch.equal(one, many)
    finally:
        torch.set_num_threads(threads)


def test_lof_picks_sklearns_tokens_and_windows_never_mix() -> None:
    """SC-CLIP's anomaly tokens are sklearn's LocalOutlierFactor(30, contamination 0.05)
    outliers, per window; a window's features do not depend on the others in its batch."""
    from sklearn.neighbors import LocalOutlierFactor

    from clsclip.model.scclip import anomalies, local_outlier_factor

    generator = torch.Generator().manual_seed(0)
    tokens = torch.randn(3, 196, 24, generator=generator, dtype=torch.float64)
    tokens[0, [5, 77]] *= 6.0  # two clear anomalies
    found = anomalies(local_outlier_factor(tokens))
    for window in range(3):
        lof = LocalOutlierFactor(n_neighbors=30, contamination=0.05)
        expected = lof.fit_predict(tokens[window].numpy()) == -1
        assert found[window].numpy().tolist() == expected.tolist()
        np.testing.assert_allclose(local_outlier_factor(tokens[window : window + 1])[0].numpy(),
                                   -lof.negative_outlier_factor_, rtol=1e-6)  # fmt: skip
    assert found[0, 5] and found[0, 77]
    segmenter = _segmenter(SETTINGS["scclip"])
    model = segmenter.backend.model
    pixels = torch.randn(3, 3, 48, 48, generator=generator, dtype=torch.float64)
    with torch.inference_mode():
        together = model.window_features(pixels)
        alone = torch.cat([model.window_features(pixels[i : i + 1]) for i in range(3)])
    torch.testing.assert_close(together, alone, atol=1e-10, rtol=0)


def test_an_open_clip_repository_folder_is_the_pretrained_backbone(tmp_path) -> None:
    """``pretrained="local-dir:..."`` (and ``hf-hub:``, the same loader through the Hub cache):
    open_clip's own repository layout; a folder without weights is refused (open_clip would go
    on with random ones)."""
    import json

    import open_clip

    torch.manual_seed(12)
    clip = open_clip.CLIP(**TINY_BACKBONE)
    repo = tmp_path / "repo"
    repo.mkdir()
    (repo / "open_clip_config.json").write_text(json.dumps({
        "model_cfg": TINY_BACKBONE,
        "preprocess_cfg": {"mean": list(MEAN), "std": list(STD)},
    }))  # fmt: skip
    config = DenseClipConfig(backbone="ViT-B-16", pretrained=f"local-dir:{repo}", image_size=44)
    with pytest.raises(FileNotFoundError, match="no weights file in"):
        Segmenter.from_config(config, device="cpu")
    torch.save(clip.state_dict(), repo / "open_clip_pytorch_model.bin")
    loaded = Segmenter.from_config(config, device="cpu").backend.model.backbone.clip
    for key, value in clip.state_dict().items():
        assert torch.equal(loaded.state_dict()[key], value), key
    with pytest.raises(FileNotFoundError, match="no open_clip_config.json in"):
        Segmenter.from_config(DenseClipConfig(pretrained=f"local-dir:{tmp_path}"), device="cpu")


def test_offline_without_the_weights_says_what_to_do(tmp_path, monkeypatch) -> None:
    """An air-gapped machine with no open_clip cache: one OSError naming the two offline
    routes (a checkpoint file, a folder saved with its backbone), no doubled period."""
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "empty-hf-home"))
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "empty-hf-home" / "hub"))
    import huggingface_hub.constants as constants

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "empty-hf-home" / "hub"))
    config = DenseClipConfig(backbone="ViT-B-32", pretrained="openai", method="naclip")
    with pytest.raises(OSError, match=r"could not fetch open_clip weights 'ViT-B-32' / 'openai' "
                       r"\(HF_HUB_OFFLINE is set\)") as raised:  # fmt: skip
        Segmenter.from_config(config, device="cpu")
    message = str(raised.value)
    assert "pretrained='/path/to/open_clip_model.bin'" in message
    assert "include_backbone=True" in message and ".." not in message

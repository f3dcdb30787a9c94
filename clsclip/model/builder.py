"""The one place where a model config becomes modules."""

from __future__ import annotations

import copy
import difflib
import logging
import os
from pathlib import Path
from typing import Any

from torch import nn

from clsclip.config import CONFIG_TYPES, AnyConfig, ClipSegConfig, ClsClipConfig, DenseClipConfig
from clsclip.config.base import is_weights_file
from clsclip.model.backbone import ClipBackbone
from clsclip.model.base import SegmentationModel, Tokenizer
from clsclip.model.clipseg_decoder import ClipSegDecoder
from clsclip.model.clipseg_model import ClipSegModel
from clsclip.model.clsclip_model import ClsClipModel
from clsclip.model.decoder import SegmentationDecoder
from clsclip.model.dense_clip import DenseClipModel
from clsclip.model.navigation import TextNavigator
from clsclip.storage.weights import read_state_dict

logger = logging.getLogger(__name__)

# CLIP's normalisation (OpenAI), used when neither the config nor the backbone gives one.
CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)


def build_model(
    config: AnyConfig,
    *,
    load_backbone_weights: bool = True,
    cache_dir: str | None = None,
) -> SegmentationModel:
    """Build the model a config describes (`ClsClipModel` or `ClipSegModel`).

    Args:
        config: the hyperparameters.
        load_backbone_weights: fetch open_clip's pretrained weights for ``config.pretrained``;
            False builds the backbone with random weights (for weights loaded afterwards).
        cache_dir: where open_clip caches downloaded backbone weights.

    Returns:
        The model on the CPU in eval mode. Its ``image_mean`` and ``image_std`` come from the
        config, else the backbone's preprocessing config, else CLIP's.
    """
    if not isinstance(config, CONFIG_TYPES):
        names = ", ".join(c.__name__ for c in CONFIG_TYPES)
        raise TypeError(f"config must be one of {names}; got {type(config).__name__}")
    pretrained = config.pretrained if load_backbone_weights else None
    clip, tokenizer = _build_clip(config.backbone, pretrained, cache_dir)
    backbone = ClipBackbone(clip)
    preprocess = getattr(clip.visual, "preprocess_cfg", None) or {}
    mean = _rgb(config.image_mean or preprocess.get("mean") or CLIP_MEAN)
    std = _rgb(config.image_std or preprocess.get("std") or CLIP_STD)
    model: SegmentationModel
    if isinstance(config, ClipSegConfig):
        model = _build_clipseg(config, backbone, tokenizer, mean, std)
    elif isinstance(config, DenseClipConfig):
        model = _build_dense(config, backbone, tokenizer, mean, std)
    else:
        model = _build_clsclip(config, backbone, tokenizer, mean, std)
    model.grid_for(config.image_size)  # fails early when image_size is not a multiple of patch
    return model.eval()


def _build_clsclip(
    config: ClsClipConfig,
    backbone: ClipBackbone,
    tokenizer: Tokenizer,
    mean: tuple[float, float, float],
    std: tuple[float, float, float],
) -> ClsClipModel:
    navigator = None
    if config.injection_layers or config.class_token:
        navigator = TextNavigator(embed_dim=backbone.embed_dim, width=backbone.width)
    decoder = SegmentationDecoder(
        width=backbone.width,
        num_layers=config.decoder_layers,
        num_heads=config.decoder_heads or max(1, backbone.width // 64),
        mlp_ratio=config.decoder_mlp_ratio,
        channels=config.decoder_channels,
        extra_channels=1 if config.text_prior else 0,
    )
    return ClsClipModel(
        backbone=backbone,
        navigator=navigator,
        decoder=decoder,
        tokenizer=tokenizer,
        prompt_templates=config.prompt_templates,
        injection_layers=config.injection_layers,
        text_prior=config.text_prior,
        class_token=config.class_token,
        image_mean=mean,
        image_std=std,
    )


def _build_clipseg(
    config: ClipSegConfig,
    backbone: ClipBackbone,
    tokenizer: Tokenizer,
    mean: tuple[float, float, float],
    std: tuple[float, float, float],
) -> ClipSegModel:
    decoder = ClipSegDecoder(
        width=backbone.width,
        embed_dim=backbone.embed_dim,
        num_extracted=len(config.extract_layers),
        reduce_dim=config.reduce_dim,
        num_heads=config.decoder_heads,
        intermediate_size=config.decoder_intermediate_size,
        conditional_layer=config.conditional_layer,
        patch_size=backbone.patch_size,
        complex_head=config.complex_head,
    )
    return ClipSegModel(
        backbone=backbone,
        decoder=decoder,
        tokenizer=tokenizer,
        prompt_templates=config.prompt_templates,
        extract_layers=config.extract_layers,
        image_mean=mean,
        image_std=std,
    )


def _build_dense(
    config: DenseClipConfig,
    backbone: ClipBackbone,
    tokenizer: Tokenizer,
    mean: tuple[float, float, float],
    std: tuple[float, float, float],
) -> DenseClipModel:
    return DenseClipModel(
        backbone=backbone,
        tokenizer=tokenizer,
        prompt_templates=config.prompt_templates,
        method=config.method,
        window=config.window,
        stride=config.stride,
        logit_scale=config.scale,
        gaussian_std=config.gaussian_std,
        background_prompts=config.background_prompts or (),
        image_mean=mean,
        image_std=std,
    )


def _rgb(values: Any) -> tuple[float, float, float]:
    r, g, b = (float(v) for v in values)
    return r, g, b


def _build_clip(
    backbone: str | dict[str, Any], pretrained: str | None, cache_dir: str | None
) -> tuple[nn.Module, Tokenizer]:
    checkpoint = pretrained if pretrained is not None and is_weights_file(pretrained) else None
    if checkpoint is not None:
        pretrained = None
    if pretrained is not None and pretrained.startswith(REPOSITORY_SCHEMAS):
        clip, tokenizer = _build_repository_clip(pretrained, cache_dir)
    elif isinstance(backbone, str):
        clip, tokenizer = _build_named_clip(backbone, pretrained, cache_dir)
    else:
        clip, tokenizer = _build_custom_clip(backbone)
    if checkpoint is not None:
        load_checkpoint(clip, checkpoint)
    return clip, tokenizer


REPOSITORY_SCHEMAS = ("hf-hub:", "local-dir:")
"""``pretrained`` values that name an open_clip repository (its ``open_clip_config.json`` and
weights) on the Hugging Face Hub or in a local folder, as open_clip's ``create_model`` reads
them; the repository's config sets the architecture."""


def _build_repository_clip(source: str, cache_dir: str | None) -> tuple[nn.Module, Tokenizer]:
    """An open_clip model from ``hf-hub:org/repo`` or ``local-dir:/path``. open_clip goes on
    with random weights when the repository has none (a warning in its log): refused here."""
    import open_clip

    schema, _, identifier = source.partition(":")
    if schema == "local-dir":
        folder = Path(identifier)
        if not (folder / "open_clip_config.json").is_file():
            raise FileNotFoundError(
                f"pretrained {source!r}: no open_clip_config.json in {str(folder)!r} (a "
                "local-dir: folder holds open_clip's config and weights, as open_clip saves a "
                "model for the Hub)"
            )
        if not any(p.suffix in (".safetensors", ".bin", ".pth") for p in folder.iterdir()):
            raise FileNotFoundError(f"pretrained {source!r}: no weights file in {str(folder)!r}")
    else:
        from open_clip.pretrained import download_pretrained_from_hf

        try:
            download_pretrained_from_hf(identifier, cache_dir=cache_dir)
        except Exception as e:
            raise OSError(
                f"pretrained {source!r}: could not fetch the repository's weights ({e}); "
                "without network access they must be in the Hugging Face cache already, or use "
                "a checkpoint file or a local-dir: folder"
            ) from e
    clip = open_clip.create_model(source, cache_dir=cache_dir)
    return clip, open_clip.get_tokenizer(source, cache_dir=cache_dir)


def load_checkpoint(clip: nn.Module, path: str) -> None:
    """Load an open_clip checkpoint file into ``clip``, strictly: a training checkpoint's
    ``state_dict`` and DistributedDataParallel's ``module.`` prefix are taken off as open_clip
    does; any missing or unexpected key is a one-line `ValueError` naming them."""
    if not os.path.isfile(path):
        raise FileNotFoundError(f"pretrained checkpoint file not found: {path!r}")
    state: dict[str, Any] = read_state_dict(path)
    if isinstance(state.get("state_dict"), dict):
        state = state["state_dict"]
    if state and all(key.startswith("module.") for key in state):
        state = {key[len("module.") :]: value for key, value in state.items()}
    own = clip.state_dict()
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    if missing or unexpected:
        raise ValueError(
            f"{path!r} is not a checkpoint of this backbone: {len(missing)} missing keys "
            f"{missing[:5]}, {len(unexpected)} unexpected keys {unexpected[:5]} (is the backbone "
            "name the checkpoint's architecture?)"
        )
    shapes = [k for k in own if tuple(own[k].shape) != tuple(state[k].shape)]
    if shapes:
        key = shapes[0]
        raise ValueError(
            f"{path!r} is not a checkpoint of this backbone: {len(shapes)} tensors of other "
            f"shapes, first {key!r} {tuple(state[key].shape)} (the model has "
            f"{tuple(own[key].shape)})"
        )
    clip.load_state_dict(state, strict=True)


def _build_named_clip(
    name: str, pretrained: str | None, cache_dir: str | None
) -> tuple[nn.Module, Tokenizer]:
    import open_clip

    available = open_clip.list_models()
    if name not in available:
        close = difflib.get_close_matches(name, available, n=5)
        raise ValueError(
            f"unknown open_clip backbone {name!r}; close matches: {close}. "
            "See open_clip.list_models() for all names, or pass an open_clip model config dict."
        )
    if pretrained is not None:
        tags = open_clip.list_pretrained_tags_by_model(name)
        if pretrained not in tags:
            raise ValueError(
                f"unknown pretrained tag {pretrained!r} for backbone {name!r}; available: {tags}"
            )
    try:
        clip = open_clip.create_model(name, pretrained=pretrained, cache_dir=cache_dir)
    except RuntimeError as e:
        reason = str(e).rstrip(". ")
        offline = " (HF_HUB_OFFLINE is set)" if os.environ.get("HF_HUB_OFFLINE") else ""
        raise OSError(
            f"could not fetch open_clip weights {name!r} / {pretrained!r}{offline}: {reason}; "
            "on a machine without network access, pass the weights as a file "
            "(pretrained='/path/to/open_clip_model.bin'), or load a model folder saved with "
            "include_backbone=True (docs/training-free.md, air-gapped)"
        ) from e
    tokenizer = open_clip.get_tokenizer(name, cache_dir=cache_dir)
    return clip, tokenizer


def _build_custom_clip(model_cfg: dict[str, Any]) -> tuple[nn.Module, Tokenizer]:
    import open_clip
    from open_clip.tokenizer import SimpleTokenizer

    cfg = copy.deepcopy(dict(model_cfg))
    text_cfg = cfg.get("text_cfg", {})
    custom_text = bool(cfg.pop("custom_text", False)) or "hf_model_name" in text_cfg
    model_class = open_clip.CustomTextCLIP if custom_text else open_clip.CLIP
    try:
        clip = model_class(**cfg)
    except TypeError as e:
        raise ValueError(f"invalid open_clip model config {model_cfg!r}: {e}") from e
    hf_tokenizer = text_cfg.get("hf_tokenizer_name")
    context_length = int(text_cfg.get("context_length", 77))
    tokenizer: Tokenizer
    if hf_tokenizer:
        tokenizer = open_clip.HFTokenizer(hf_tokenizer, context_length=context_length)
    else:
        tokenizer = SimpleTokenizer(context_length=context_length)
    return clip, tokenizer

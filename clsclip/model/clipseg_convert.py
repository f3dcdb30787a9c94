"""Reading transformers CLIPSeg checkpoints (``model_type: clipseg``) into clsclip's own model."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import torch

if TYPE_CHECKING:
    from clsclip.config import ClipSegConfig

# transformers' defaults, for keys that older config files leave out.
_VISION_DEFAULTS = {
    "hidden_size": 768, "intermediate_size": 3072, "num_hidden_layers": 12,
    "num_attention_heads": 12, "image_size": 224, "patch_size": 32,
    "hidden_act": "quick_gelu", "layer_norm_eps": 1e-5,
}  # fmt: skip
_TEXT_DEFAULTS = {
    "vocab_size": 49408, "hidden_size": 512, "intermediate_size": 2048, "num_hidden_layers": 12,
    "num_attention_heads": 8, "max_position_embeddings": 77, "hidden_act": "quick_gelu",
    "layer_norm_eps": 1e-5,
}  # fmt: skip
_IGNORED = re.compile(r".*position_ids$")
# Where transformers' (attention, layer_norm1, layer_norm2, fc1, fc2) live in clsclip's layers.
_OPEN_CLIP_BLOCK = ("attn", "ln_1", "ln_2", "mlp.c_fc", "mlp.c_proj")
_TORCH_ENCODER_LAYER = ("self_attn", "norm1", "norm2", "linear1", "linear2")


def config_from_transformers(
    cls: type[ClipSegConfig], data: Mapping[str, Any], *, image_size: int
) -> ClipSegConfig:
    """A `ClipSegConfig` equivalent to a transformers ``CLIPSegConfig`` dict.

    Raises `TypeError` / `ValueError` naming the field for a malformed dict.
    """
    try:
        return _convert(cls, data, image_size=image_size)
    except (TypeError, ValueError, KeyError) as e:
        raise type(e)(f"invalid transformers CLIPSeg config: {e}") from e


def _tower(data: Mapping[str, Any], name: str, defaults: dict[str, Any]) -> dict[str, Any]:
    value = data.get(name) or data.get(f"{name}_dict") or {}
    if not isinstance(value, Mapping):
        raise TypeError(f"{name} must be a dict, got {type(value).__name__} {value!r}")
    return {**defaults, **value}


def _convert(
    cls: type[ClipSegConfig], data: Mapping[str, Any], *, image_size: int
) -> ClipSegConfig:
    vision = _tower(data, "vision_config", _VISION_DEFAULTS)
    text = _tower(data, "text_config", _TEXT_DEFAULTS)
    acts = {vision["hidden_act"], text["hidden_act"]}
    if not acts <= {"quick_gelu", "gelu"} or len(acts) != 1:
        raise ValueError(
            f"unsupported CLIPSeg activations {sorted(acts)}: clsclip's open_clip backbone needs "
            "'quick_gelu' or 'gelu', the same in both towers"
        )
    for tower in (vision, text):
        if abs(float(tower["layer_norm_eps"]) - 1e-5) > 1e-12:
            raise ValueError(f"unsupported layer_norm_eps {tower['layer_norm_eps']} (need 1e-5)")
    backbone = {
        "embed_dim": int(data.get("projection_dim", 512)),
        "quick_gelu": acts == {"quick_gelu"},
        "vision_cfg": {
            "image_size": int(vision["image_size"]),
            "patch_size": int(vision["patch_size"]),
            "width": int(vision["hidden_size"]),
            "layers": int(vision["num_hidden_layers"]),
            "head_width": int(vision["hidden_size"]) // int(vision["num_attention_heads"]),
            "mlp_ratio": int(vision["intermediate_size"]) / int(vision["hidden_size"]),
        },
        "text_cfg": {
            "context_length": int(text["max_position_embeddings"]),
            "vocab_size": int(text["vocab_size"]),
            "width": int(text["hidden_size"]),
            "heads": int(text["num_attention_heads"]),
            "layers": int(text["num_hidden_layers"]),
            "mlp_ratio": int(text["intermediate_size"]) / int(text["hidden_size"]),
        },
    }
    return cls(
        backbone=backbone,
        pretrained=None,
        image_size=image_size,
        extract_layers=tuple(int(i) for i in data.get("extract_layers", (3, 6, 9))),
        reduce_dim=int(data.get("reduce_dim", 64)),
        decoder_heads=int(data.get("decoder_num_attention_heads", 4)),
        decoder_intermediate_size=int(data.get("decoder_intermediate_size", 2048)),
        conditional_layer=int(data.get("conditional_layer", 0)),
        complex_head=bool(data.get("use_complex_transposed_convolution", False)),
    )


def state_dict_from_transformers(hf: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Rename (and fuse q/k/v of) a transformers CLIPSeg state dict into clsclip's names.

    Raises `ValueError` listing any tensor that has no place in clsclip's model.
    """
    hf = {k: v for k, v in hf.items() if not _IGNORED.match(k)}
    out: dict[str, torch.Tensor] = {}
    used: set[str] = set()

    def take(key: str) -> torch.Tensor:
        if key not in hf:
            raise ValueError(f"the CLIPSeg checkpoint lacks the tensor {key!r}")
        used.add(key)
        return hf[key]

    def attention(src: str, dst: str) -> None:
        for kind in ("weight", "bias"):
            out[f"{dst}.in_proj_{kind}"] = torch.cat(
                [take(f"{src}.{p}_proj.{kind}") for p in ("q", "k", "v")]
            )
            out[f"{dst}.out_proj.{kind}"] = take(f"{src}.out_proj.{kind}")

    def linear(src: str, dst: str) -> None:
        for kind in ("weight", "bias"):
            out[f"{dst}.{kind}"] = take(f"{src}.{kind}")

    def indices(prefix: str) -> list[int]:
        pattern = re.compile(rf"{re.escape(prefix)}\.(\d+)\.")
        return sorted({int(m.group(1)) for k in hf if (m := pattern.match(k))})

    def block(src: str, dst: str, names: tuple[str, str, str, str, str]) -> None:
        """One Transformer layer: attention, the two norms, the two MLP linears."""
        attn, norm1, norm2, fc1, fc2 = names
        attention(f"{src}.self_attn", f"{dst}.{attn}")
        linear(f"{src}.layer_norm1", f"{dst}.{norm1}")
        linear(f"{src}.layer_norm2", f"{dst}.{norm2}")
        linear(f"{src}.mlp.fc1", f"{dst}.{fc1}")
        linear(f"{src}.mlp.fc2", f"{dst}.{fc2}")

    def towers(src: str, dst: str) -> None:
        for i in indices(f"{src}.encoder.layers"):
            block(f"{src}.encoder.layers.{i}", f"{dst}.resblocks.{i}", _OPEN_CLIP_BLOCK)

    v, c = "clip.vision_model", "backbone.clip"
    out[f"{c}.visual.class_embedding"] = take(f"{v}.embeddings.class_embedding")
    out[f"{c}.visual.conv1.weight"] = take(f"{v}.embeddings.patch_embedding.weight")
    out[f"{c}.visual.positional_embedding"] = take(f"{v}.embeddings.position_embedding.weight")
    linear(f"{v}.pre_layrnorm", f"{c}.visual.ln_pre")
    towers(v, f"{c}.visual.transformer")
    linear(f"{v}.post_layernorm", f"{c}.visual.ln_post")
    out[f"{c}.visual.proj"] = take("clip.visual_projection.weight").T.contiguous()
    t = "clip.text_model"
    out[f"{c}.token_embedding.weight"] = take(f"{t}.embeddings.token_embedding.weight")
    out[f"{c}.positional_embedding"] = take(f"{t}.embeddings.position_embedding.weight")
    towers(t, f"{c}.transformer")
    linear(f"{t}.final_layer_norm", f"{c}.ln_final")
    out[f"{c}.text_projection"] = take("clip.text_projection.weight").T.contiguous()
    out[f"{c}.logit_scale"] = take("clip.logit_scale")

    linear("decoder.film_mul", "decoder.film_mul")
    linear("decoder.film_add", "decoder.film_add")
    for i in indices("decoder.reduces"):
        linear(f"decoder.reduces.{i}", f"decoder.reduces.{i}")
    for i in indices("decoder.layers"):
        block(f"decoder.layers.{i}", f"decoder.layers.{i}", _TORCH_ENCODER_LAYER)
    head = "decoder.transposed_convolution"
    for key in [k for k in hf if k.startswith(head + ".")]:
        out["decoder.head" + key[len(head) :]] = take(key)

    unused = sorted(set(hf) - used)
    if unused:
        shown = ", ".join(unused[:20])
        raise ValueError(f"{len(unused)} CLIPSeg tensors have no place in clsclip's model: {shown}")
    return out

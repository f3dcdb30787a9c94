"""Renaming a transformers CLIPSeg state dict (``model_type: clipseg``) into clsclip's model.

The config conversion is `clsclip.config.clipseg_transformers`.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

import torch

_IGNORED = re.compile(r".*position_ids$")
# Where transformers' (attention, layer_norm1, layer_norm2, fc1, fc2) live in clsclip's layers.
_OPEN_CLIP_BLOCK = ("attn", "ln_1", "ln_2", "mlp.c_fc", "mlp.c_proj")
_TORCH_ENCODER_LAYER = ("self_attn", "norm1", "norm2", "linear1", "linear2")


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

"""CLIPSeg's hyperparameters, and the conversion of transformers' ``CLIPSegConfig`` dicts."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

from clsclip.checks import check_int
from clsclip.config.base import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    MAX_HEADS,
    MAX_LAYERS,
    MAX_WIDTH,
    ModelConfig,
)

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


@dataclass(frozen=True)
class ClipSegConfig(ModelConfig):
    """Hyperparameters of a CLIPSeg model (Lueddecke and Ecker, CVPR 2022) run by clsclip.

    Defaults are those of ``CIDAS/clipseg-rd64-refined``: 352 px, ImageNet normalisation, bare
    class names as prompts. Transformers checkpoints are converted with `from_transformers`.

    Attributes:
        extract_layers: 0-indexed visual blocks whose outputs feed the decoder.
        reduce_dim: decoder width.
        decoder_heads: attention heads of the decoder layers.
        decoder_intermediate_size: MLP width of the decoder layers.
        conditional_layer: decoder layer (deepest activation first) where FiLM applies the text.
        complex_head: the "refined" head (conv3x3 and two transposed convs) instead of one
            transposed conv.
    """

    MODEL_TYPE: ClassVar[str] = "clsclip-clipseg"
    FAMILY: ClassVar[str] = "CLIPSeg (converted)"

    image_size: int = 352
    prompt_templates: tuple[str, ...] = ("{}",)
    image_mean: tuple[float, float, float] | None = IMAGENET_MEAN
    image_std: tuple[float, float, float] | None = IMAGENET_STD
    extract_layers: tuple[int, ...] = (3, 6, 9)
    reduce_dim: int = 64
    decoder_heads: int = 4
    decoder_intermediate_size: int = 2048
    conditional_layer: int = 0
    complex_head: bool = True

    def _validate(self) -> None:
        if not isinstance(self.extract_layers, tuple) or not self.extract_layers:
            raise ValueError(
                f"extract_layers must be a non-empty tuple, got {self.extract_layers!r}"
            )
        if len(self.extract_layers) > MAX_LAYERS:
            raise ValueError(f"extract_layers must have at most {MAX_LAYERS} entries")
        for layer in self.extract_layers:
            check_int("extract_layers entry", layer, minimum=0, maximum=MAX_LAYERS - 1)
        check_int("reduce_dim", self.reduce_dim, minimum=1, maximum=MAX_WIDTH)
        check_int("decoder_heads", self.decoder_heads, minimum=1, maximum=MAX_HEADS)
        check_int(
            "decoder_intermediate_size",
            self.decoder_intermediate_size,
            minimum=1,
            maximum=MAX_WIDTH,
        )
        check_int("conditional_layer", self.conditional_layer, minimum=0)
        if self.conditional_layer >= len(self.extract_layers):
            raise ValueError(
                f"conditional_layer {self.conditional_layer} must be < the number of "
                f"extract_layers ({len(self.extract_layers)})"
            )
        if not isinstance(self.complex_head, bool):
            raise TypeError(f"complex_head must be a bool, got {self.complex_head!r}")

    @classmethod
    def from_transformers(cls, data: Mapping[str, Any], *, image_size: int = 352) -> ClipSegConfig:
        """Convert a transformers ``CLIPSegConfig`` dict (``config.json``, model_type clipseg)."""
        try:
            return _convert(data, image_size=image_size)
        except (TypeError, ValueError, KeyError) as e:
            raise type(e)(f"invalid transformers CLIPSeg config: {e}") from e


def _tower(data: Mapping[str, Any], name: str, defaults: dict[str, Any]) -> dict[str, Any]:
    value = data.get(name) or data.get(f"{name}_dict") or {}
    if not isinstance(value, Mapping):
        raise TypeError(f"{name} must be a dict, got {type(value).__name__} {value!r}")
    return {**defaults, **value}


def _convert(data: Mapping[str, Any], *, image_size: int) -> ClipSegConfig:
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
    return ClipSegConfig(
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

"""Model configuration: frozen dataclasses, saved as JSON.

Every hyperparameter of a model lives here; `clsclip.model.builder.build_model` is the one place
that turns a config into modules. `ClsClipConfig` describes ClsCLIP, `ClipSegConfig` CLIPSeg.
"""

from __future__ import annotations

import dataclasses
import json
import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar, TypeVar

from clsclip.inputs import check_int, check_threshold

FORMAT_VERSION = 1
RESIZE_MODES = ("letterbox", "resize")
MAX_IMAGE_SIZE = 4096
"""Largest model input side accepted (a 256 x 256 patch grid at 16 px patches)."""
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

_Config = TypeVar("_Config", bound="ModelConfig")


@dataclass(frozen=True)
class ModelConfig:
    """Fields and JSON handling shared by every model config.

    Attributes:
        backbone: an open_clip model name (``"ViT-B-16-quickgelu"``; see
            ``open_clip.list_models()``) or a dict that is an open_clip model config
            (``{"embed_dim": ..., "vision_cfg": {...}, "text_cfg": {...}}``) for custom
            backbones. Only open_clip's own ViT image tower is supported (not timm towers).
        pretrained: an open_clip pretrained tag for a named backbone (``"openai"``), or ``None``
            for random backbone weights (or weights stored with the model).
        image_size: side in pixels of the square model input; a multiple of the patch size. The
            position embedding is interpolated to the input's grid, so any size works.
        prompt_templates: format strings with one ``{}`` for the class name; the text vectors of
            all templates are averaged.
        threshold: probability above which a pixel belongs to a class, in [0, 1].
        image_mean, image_std: per-channel RGB normalisation in [0, 1] units; ``None`` takes the
            backbone's (open_clip's preprocessing config), which is CLIP's by default.
        resize_mode: how an image becomes the square input: ``"letterbox"`` (long side to
            ``image_size``, aspect ratio kept, padded) or ``"resize"`` (stretched to the square,
            as the PASCAL-5i / COCO-20i references do). Train and evaluate a model the same way.
    """

    MODEL_TYPE: ClassVar[str] = ""

    backbone: str | dict[str, Any] = "ViT-B-16-quickgelu"
    pretrained: str | None = "openai"
    image_size: int = 352
    prompt_templates: tuple[str, ...] = ("a photo of a {}.",)
    threshold: float = 0.5
    image_mean: tuple[float, float, float] | None = None
    image_std: tuple[float, float, float] | None = None
    resize_mode: str = "letterbox"

    def __post_init__(self) -> None:
        # Lists (from JSON or users) become tuples, so that the frozen config compares equal.
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if isinstance(value, list):
                object.__setattr__(self, f.name, tuple(value))
        self._validate_common()
        self._validate()

    def _validate(self) -> None:
        """Checks of the fields a subclass adds."""

    def _validate_common(self) -> None:
        if isinstance(self.backbone, str):
            if not self.backbone:
                raise ValueError("backbone must be an open_clip model name, got ''")
        elif isinstance(self.backbone, Mapping):
            _check_backbone_dict(self.backbone)
        else:
            raise TypeError(
                "backbone must be an open_clip model name (str) or an open_clip model config "
                f"(dict), got {type(self.backbone).__name__}"
            )
        if self.pretrained is not None and not isinstance(self.pretrained, str):
            raise TypeError(f"pretrained must be a str or None, got {self.pretrained!r}")
        if isinstance(self.backbone, Mapping) and self.pretrained is not None:
            raise ValueError(
                "pretrained tags apply to named open_clip backbones only; a custom backbone dict "
                f"needs pretrained=None (got {self.pretrained!r})"
            )
        check_int("image_size", self.image_size, minimum=1)
        if self.image_size > MAX_IMAGE_SIZE:
            raise ValueError(f"image_size must be <= {MAX_IMAGE_SIZE}, got {self.image_size}")
        _check_templates(self.prompt_templates)
        check_threshold(self.threshold)
        if self.resize_mode not in RESIZE_MODES:
            raise ValueError(
                f"unknown resize_mode {self.resize_mode!r}; choose one of {list(RESIZE_MODES)}"
            )
        for name in ("image_mean", "image_std"):
            value = getattr(self, name)
            if value is not None and (
                len(value) != 3 or not all(isinstance(v, (int, float)) for v in value)
            ):
                raise ValueError(f"{name} must be None or 3 numbers (R, G, B), got {value!r}")
        if self.image_std is not None and any(v <= 0 for v in self.image_std):
            raise ValueError(f"image_std must be positive, got {self.image_std!r}")

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict of the fields (tuples become lists)."""
        return json.loads(json.dumps(dataclasses.asdict(self)))

    @classmethod
    def from_dict(cls: type[_Config], data: Mapping[str, Any]) -> _Config:
        """Build a config from a dict; unknown keys raise a `ValueError` that names them.

        The file keys ``model_type`` and ``format_version`` are accepted and checked.
        """
        if not isinstance(data, Mapping):
            raise TypeError(f"config must be a mapping, got {type(data).__name__}")
        data = dict(data)
        model_type = data.pop("model_type", cls.MODEL_TYPE)
        if model_type != cls.MODEL_TYPE:
            raise ValueError(f"config model_type is {model_type!r}, expected {cls.MODEL_TYPE!r}")
        version = data.pop("format_version", FORMAT_VERSION)
        if version != FORMAT_VERSION:
            raise ValueError(
                f"config format_version {version!r} is not supported by this clsclip "
                f"(supported: {FORMAT_VERSION}); upgrade clsclip"
            )
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"unknown config keys {unknown}; known keys: {sorted(known)}")
        return cls(**data)

    def to_file_dict(self) -> dict[str, Any]:
        """What `save` writes: ``model_type``, ``format_version`` and the fields."""
        payload: dict[str, Any] = {"model_type": self.MODEL_TYPE, "format_version": FORMAT_VERSION}
        payload.update(self.to_dict())
        return payload

    def save(self, path: str | os.PathLike[str]) -> None:
        """Write the config as JSON (with ``model_type`` and ``format_version``)."""
        with open(path, "w", encoding="utf-8") as f:
            json.dump(self.to_file_dict(), f, indent=2)
            f.write("\n")

    @classmethod
    def load(cls: type[_Config], path: str | os.PathLike[str]) -> _Config:
        """Read a config written by `save`; raises `ValueError` for invalid JSON or keys."""
        return cls.from_dict(read_json(path))


@dataclass(frozen=True)
class ClsClipConfig(ModelConfig):
    """Hyperparameters of a ClsCLIP model (see `ModelConfig` for the shared fields).

    Attributes:
        injection_layers: 0-indexed visual blocks right before which the [CLS] token is replaced by
            the projected text vector. ``()`` turns navigation off (needs ``text_prior``).
        text_prior: add a decoder input channel with the cosine similarity between the class text
            vector and the last block's patch tokens (through ``ln_post`` and the projection).
        decoder_layers: Transformer layers of the decoder, at the visual width.
        decoder_heads: attention heads of the decoder; ``None`` gives ``width // 64`` (at least 1).
        decoder_mlp_ratio: hidden width of the decoder's MLPs over the visual width.
        decoder_channels: output channels of the 3x3 convolutions of the head.
    """

    MODEL_TYPE: ClassVar[str] = "clsclip"

    injection_layers: tuple[int, ...] = (2, 3, 4)
    text_prior: bool = False
    decoder_layers: int = 2
    decoder_heads: int | None = None
    decoder_mlp_ratio: float = 4.0
    decoder_channels: tuple[int, ...] = (256, 128, 64)

    def _validate(self) -> None:
        if not isinstance(self.injection_layers, tuple):
            raise TypeError(
                f"injection_layers must be a tuple of ints, got {self.injection_layers!r}"
            )
        for layer in self.injection_layers:
            check_int("injection_layers entry", layer, minimum=0)
        if len(set(self.injection_layers)) != len(self.injection_layers):
            raise ValueError(f"injection_layers has duplicates: {self.injection_layers}")
        if not isinstance(self.text_prior, bool):
            raise TypeError(f"text_prior must be a bool, got {self.text_prior!r}")
        if not self.injection_layers and not self.text_prior:
            raise ValueError(
                "injection_layers=() with text_prior=False gives a model that cannot see the "
                "class: the [CLS] injection is its only path for the text. Set injection_layers "
                "(the paper's (2, 3, 4)) or text_prior=True for the no-navigation baseline."
            )
        check_int("decoder_layers", self.decoder_layers, minimum=0)
        if self.decoder_heads is not None:
            check_int("decoder_heads", self.decoder_heads, minimum=1)
        if not isinstance(self.decoder_mlp_ratio, (int, float)) or self.decoder_mlp_ratio <= 0:
            raise ValueError(f"decoder_mlp_ratio must be positive, got {self.decoder_mlp_ratio!r}")
        if not self.decoder_channels:
            raise ValueError("decoder_channels needs at least one entry")
        for channels in self.decoder_channels:
            check_int("decoder_channels entry", channels, minimum=1)

    @property
    def first_injection_layer(self) -> int | None:
        """The first block that depends on the class, or ``None`` without navigation."""
        return min(self.injection_layers) if self.injection_layers else None


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
        for layer in self.extract_layers:
            check_int("extract_layers entry", layer, minimum=0)
        check_int("reduce_dim", self.reduce_dim, minimum=1)
        check_int("decoder_heads", self.decoder_heads, minimum=1)
        check_int("decoder_intermediate_size", self.decoder_intermediate_size, minimum=1)
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
        from clsclip.model.clipseg_convert import config_from_transformers

        return config_from_transformers(cls, data, image_size=image_size)


AnyConfig = ClsClipConfig | ClipSegConfig
_CONFIG_TYPES: dict[str, type[ClsClipConfig] | type[ClipSegConfig]] = {
    ClsClipConfig.MODEL_TYPE: ClsClipConfig,
    ClipSegConfig.MODEL_TYPE: ClipSegConfig,
}


def read_json(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Read a JSON object; `ValueError` naming the file when it is not valid JSON."""
    with open(path, encoding="utf-8") as f:
        try:
            data = json.load(f)
        except json.JSONDecodeError as e:
            raise ValueError(f"{os.fspath(path)} is not valid JSON: {e}") from e
        except RecursionError:
            raise ValueError(f"{os.fspath(path)} is nested too deeply to be a config") from None
    if not isinstance(data, dict):
        raise ValueError(f"{os.fspath(path)} must hold a JSON object, got {type(data).__name__}")
    return data


def config_from_dict(data: Mapping[str, Any]) -> AnyConfig:
    """The config a ``config.json`` describes, by its ``model_type``: clsclip's own types, or a
    transformers CLIPSeg config (``"clipseg"``), which is converted."""
    model_type = data.get("model_type", ClsClipConfig.MODEL_TYPE)
    if model_type == "clipseg":
        return ClipSegConfig.from_transformers(data)
    if model_type not in _CONFIG_TYPES:
        raise ValueError(
            f"unsupported model_type {model_type!r}; supported: {sorted(_CONFIG_TYPES)} and "
            "'clipseg' (transformers CLIPSeg checkpoints)"
        )
    return _CONFIG_TYPES[model_type].from_dict(data)


_TOWER_INTS = {
    "vision_cfg": ("layers", "width", "head_width", "patch_size", "image_size"),
    "text_cfg": ("context_length", "vocab_size", "width", "heads", "layers"),
}


def _check_backbone_dict(backbone: Mapping[str, Any]) -> None:
    """The parts of an open_clip model config that clsclip reads: present, of the right type and
    positive, so that a bad value is named here rather than failing deep inside torch."""
    missing = [k for k in ("embed_dim", "vision_cfg", "text_cfg") if k not in backbone]
    if missing:
        raise ValueError(f"backbone dict is not an open_clip model config: missing keys {missing}")
    check_int("backbone embed_dim", backbone["embed_dim"], minimum=1)
    for tower, keys in _TOWER_INTS.items():
        cfg = backbone[tower]
        if not isinstance(cfg, Mapping):
            raise TypeError(f"backbone {tower} must be a dict, got {type(cfg).__name__} {cfg!r}")
        for key in keys:
            value = cfg.get(key)
            if key == "image_size" and isinstance(value, (list, tuple)):
                for side in value:
                    check_int(f"backbone {tower}.{key} entry", side, minimum=1)
            elif value is not None:
                check_int(f"backbone {tower}.{key}", value, minimum=1)
        ratio = cfg.get("mlp_ratio")
        if ratio is not None and (
            isinstance(ratio, bool) or not isinstance(ratio, (int, float)) or not ratio > 0
        ):
            raise ValueError(f"backbone {tower}.mlp_ratio must be a positive number, got {ratio!r}")
    vision, text = backbone["vision_cfg"], backbone["text_cfg"]
    width, head_width = vision.get("width", 768), vision.get("head_width", 64)
    if width % head_width:
        raise ValueError(
            f"backbone vision_cfg.width {width} is not a multiple of head_width {head_width}"
        )
    if text.get("width", 512) % text.get("heads", 8):
        raise ValueError(
            f"backbone text_cfg.width {text.get('width', 512)} is not a multiple of heads "
            f"{text.get('heads', 8)}"
        )


def _check_templates(templates: object) -> None:
    if not isinstance(templates, tuple) or not templates:
        raise ValueError(f"prompt_templates must be a non-empty tuple of str, got {templates!r}")
    for template in templates:
        if not isinstance(template, str) or template.count("{}") != 1:
            raise ValueError(
                f"each prompt template must be a str with exactly one '{{}}', got {template!r}"
            )

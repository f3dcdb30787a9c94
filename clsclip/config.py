"""Model configuration: one frozen dataclass, saved as JSON.

Every hyperparameter of a ClsCLIP model lives here; `clsclip.model.builder.build_model` is the
one place that turns a config into modules.
"""

from __future__ import annotations

import dataclasses
import json
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from clsclip.inputs import check_int, check_threshold

MODEL_TYPE = "clsclip"
FORMAT_VERSION = 1

# Keys written beside the config fields in config.json; accepted (and checked) when reading.
_FILE_KEYS = ("model_type", "format_version")


@dataclass(frozen=True)
class ClsClipConfig:
    """Hyperparameters of a ClsCLIP model.

    Attributes:
        backbone: an open_clip model name (``"ViT-B-16-quickgelu"``; see
            ``open_clip.list_models()``) or a dict that is an open_clip model config
            (``{"embed_dim": ..., "vision_cfg": {...}, "text_cfg": {...}}``) for custom
            backbones. Only open_clip's own ViT image tower is supported (not timm towers).
        pretrained: an open_clip pretrained tag for a named backbone (``"openai"``), or ``None``
            for random backbone weights (or weights stored with the model).
        image_size: side in pixels of the square model input; a multiple of the patch size. The
            position embedding is interpolated to the input's grid, so any size works.
        injection_layers: 0-indexed visual blocks right before which the [CLS] token is replaced by
            the projected text vector. ``()`` turns navigation off (needs ``text_prior``).
        text_prior: add a decoder input channel with the cosine similarity between the class text
            vector and the last block's patch tokens (through ``ln_post`` and the projection).
        prompt_templates: format strings with one ``{}`` for the class name; the text vectors of
            all templates are averaged.
        threshold: probability above which a pixel belongs to a class, in [0, 1].
        image_mean, image_std: per-channel RGB normalisation in [0, 1] units; ``None`` takes the
            backbone's (open_clip's preprocessing config), which is CLIP's by default.
        decoder_layers: Transformer layers of the decoder, at the visual width.
        decoder_heads: attention heads of the decoder; ``None`` gives ``width // 64`` (at least 1).
        decoder_mlp_ratio: hidden width of the decoder's MLPs over the visual width.
        decoder_channels: output channels of the 3x3 convolutions of the head.
    """

    backbone: str | dict[str, Any] = "ViT-B-16-quickgelu"
    pretrained: str | None = "openai"
    image_size: int = 352
    injection_layers: tuple[int, ...] = (2, 3, 4)
    text_prior: bool = False
    prompt_templates: tuple[str, ...] = ("a photo of a {}.",)
    threshold: float = 0.5
    image_mean: tuple[float, float, float] | None = None
    image_std: tuple[float, float, float] | None = None
    decoder_layers: int = 2
    decoder_heads: int | None = None
    decoder_mlp_ratio: float = 4.0
    decoder_channels: tuple[int, ...] = field(default=(256, 128, 64))

    def __post_init__(self) -> None:
        # Lists (from JSON or users) become tuples so that the config stays hashable-ish and frozen.
        for name in ("injection_layers", "prompt_templates", "decoder_channels"):
            value = getattr(self, name)
            if isinstance(value, list):
                object.__setattr__(self, name, tuple(value))
        for name in ("image_mean", "image_std"):
            value = getattr(self, name)
            if isinstance(value, list):
                object.__setattr__(self, name, tuple(value))
        self._validate()

    def _validate(self) -> None:
        if isinstance(self.backbone, str):
            if not self.backbone:
                raise ValueError("backbone must be an open_clip model name, got ''")
        elif isinstance(self.backbone, Mapping):
            missing = [k for k in ("embed_dim", "vision_cfg", "text_cfg") if k not in self.backbone]
            if missing:
                raise ValueError(
                    f"backbone dict is not an open_clip model config: missing keys {missing}"
                )
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
        _check_templates(self.prompt_templates)
        check_threshold(self.threshold)
        for name in ("image_mean", "image_std"):
            value = getattr(self, name)
            if value is not None and (
                len(value) != 3 or not all(isinstance(v, (int, float)) for v in value)
            ):
                raise ValueError(f"{name} must be None or 3 numbers (R, G, B), got {value!r}")
        if self.image_std is not None and any(v <= 0 for v in self.image_std):
            raise ValueError(f"image_std must be positive, got {self.image_std!r}")
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

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict of the fields (tuples become lists)."""
        return json.loads(json.dumps(dataclasses.asdict(self)))

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ClsClipConfig:
        """Build a config from a dict; unknown keys raise a `ValueError` that names them.

        The file keys ``model_type`` and ``format_version`` are accepted and checked.
        """
        if not isinstance(data, Mapping):
            raise TypeError(f"config must be a mapping, got {type(data).__name__}")
        data = dict(data)
        model_type = data.pop("model_type", MODEL_TYPE)
        if model_type != MODEL_TYPE:
            raise ValueError(f"config model_type is {model_type!r}, expected {MODEL_TYPE!r}")
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

    def save(self, path: str | os.PathLike[str]) -> None:
        """Write the config as JSON (with ``model_type`` and ``format_version``)."""
        payload = {"model_type": MODEL_TYPE, "format_version": FORMAT_VERSION, **self.to_dict()}
        with open(path, "w", encoding="utf-8") as f:
            json.dump(payload, f, indent=2)
            f.write("\n")

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> ClsClipConfig:
        """Read a config written by `save`; raises `ValueError` for invalid JSON or keys."""
        with open(path, encoding="utf-8") as f:
            try:
                data = json.load(f)
            except json.JSONDecodeError as e:
                raise ValueError(f"{os.fspath(path)} is not valid JSON: {e}") from e
        return cls.from_dict(data)


def _check_templates(templates: object) -> None:
    if not isinstance(templates, tuple) or not templates:
        raise ValueError(f"prompt_templates must be a non-empty tuple of str, got {templates!r}")
    for template in templates:
        if not isinstance(template, str) or template.count("{}") != 1:
            raise ValueError(
                f"each prompt template must be a str with exactly one '{{}}', got {template!r}"
            )

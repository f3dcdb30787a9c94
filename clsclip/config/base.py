"""What every model config shares: the backbone, the input, prompts, threshold, JSON I/O."""

from __future__ import annotations

import dataclasses
import json
import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar, TypeVar

from clsclip.checks import check_int, check_number, check_threshold
from clsclip.geometry import RESIZE_MODES

FORMAT_VERSION = 1
MAX_IMAGE_SIZE = 4096
"""Largest model input side accepted (a 256 x 256 patch grid at 16 px patches)."""
MAX_LAYERS = 256
"""Most transformer blocks of a tower or decoder (ViT-bigG has 48)."""
MAX_WIDTH = 16_384
"""Widest token, embedding, channel or MLP dimension (ViT-bigG's MLP is 8,192 wide)."""
MAX_HEADS = 1024
MAX_RATIO = 64.0
"""Largest MLP ratio (hidden width over token width; CLIP's is 4)."""
MAX_CONTEXT = 4096
"""Longest text context (CLIP's is 77)."""
MAX_VOCAB = 1_000_000
"""Largest text vocabulary (CLIP's is 49,408)."""
MAX_PARAMETERS = 10_000_000_000
"""Most parameters a custom backbone may have by its config (ViT-bigG has about 2.5 billion),
estimated before anything is allocated."""
MAX_NORMALISATION = 1e3
"""Largest magnitude of ``image_mean`` / ``image_std`` values (in [0, 1] units)."""
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
        pretrained: an open_clip pretrained tag for a named backbone (``"openai"``), the path of
            a checkpoint file of the backbone's open_clip weights (``.bin``, ``.pt``, ``.pth``
            or ``.safetensors``, as open_clip saves them: the air-gapped route), an open_clip
            repository (``"hf-hub:org/repo"`` or ``"local-dir:/path"``, whose own config sets
            the architecture), or ``None
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
        class_thresholds: thresholds of named classes, over ``threshold`` (``clsclip
            calibrate`` writes them; a call's or a class spec's threshold goes first).
        calibration: what ``clsclip calibrate`` fitted: ``{"classes": {name: {"scale": a,
            "bias": b}}, "default": {"scale": a, "bias": b}, ...}``; the logits of a class
            become ``a * logit + b`` (its own entry, else ``default``). None: uncalibrated. The
            other keys record the calibration set and the figures before and after.
        prompt_rule: how the prompts of one class spec are combined: ``"mean"`` (one vector)
            or ``"max"`` (the largest logit of the prompts); see `clsclip.classes`.
    """

    MODEL_TYPE: ClassVar[str] = ""
    FAMILY: ClassVar[str] = ""
    """Which kind of model: ``"ClsCLIP (trained)"``, ``"CLIPSeg (converted)"`` or
    ``"training-free"``, for logs and model cards."""

    backbone: str | dict[str, Any] = "ViT-B-16-quickgelu"
    pretrained: str | None = "openai"
    image_size: int = 352
    prompt_templates: tuple[str, ...] = ("a photo of a {}.",)
    threshold: float = 0.5
    image_mean: tuple[float, float, float] | None = None
    image_std: tuple[float, float, float] | None = None
    resize_mode: str = "letterbox"
    class_thresholds: dict[str, float] = dataclasses.field(default_factory=dict)
    calibration: dict[str, Any] | None = None
    prompt_rule: str = "mean"

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
        if (
            isinstance(self.backbone, Mapping)
            and self.pretrained is not None
            and not is_weights_file(self.pretrained)
        ):
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
        _check_class_thresholds(self.class_thresholds)
        if self.calibration is not None:
            _check_calibration(self.calibration)
        if self.prompt_rule not in PROMPT_RULES:
            raise ValueError(
                f"unknown prompt_rule {self.prompt_rule!r}; choose one of {list(PROMPT_RULES)}"
            )
        for name in ("image_mean", "image_std"):
            value = getattr(self, name)
            if value is None:
                continue
            if not isinstance(value, tuple) or len(value) != 3:
                raise ValueError(f"{name} must be None or 3 numbers (R, G, B), got {value!r}")
            for v in value:  # NaN or infinite normalisation makes every probability NaN
                check_number(
                    f"{name} entry", v, maximum=MAX_NORMALISATION, positive=name == "image_std"
                )

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


_TOWER_INTS = {
    "vision_cfg": {
        "layers": MAX_LAYERS,
        "width": MAX_WIDTH,
        "head_width": MAX_WIDTH,
        "patch_size": MAX_IMAGE_SIZE,
        "image_size": MAX_IMAGE_SIZE,
    },
    "text_cfg": {
        "context_length": MAX_CONTEXT,
        "vocab_size": MAX_VOCAB,
        "width": MAX_WIDTH,
        "heads": MAX_HEADS,
        "layers": MAX_LAYERS,
    },
}


def _check_backbone_dict(backbone: Mapping[str, Any]) -> None:
    """The parts of an open_clip model config that clsclip reads: present, of the right type and
    positive, so that a bad value is named here rather than failing deep inside torch."""
    missing = [k for k in ("embed_dim", "vision_cfg", "text_cfg") if k not in backbone]
    if missing:
        raise ValueError(f"backbone dict is not an open_clip model config: missing keys {missing}")
    check_int("backbone embed_dim", backbone["embed_dim"], minimum=1, maximum=MAX_WIDTH)
    for tower, keys in _TOWER_INTS.items():
        cfg = backbone[tower]
        if not isinstance(cfg, Mapping):
            raise TypeError(f"backbone {tower} must be a dict, got {type(cfg).__name__} {cfg!r}")
        if tower == "vision_cfg" and isinstance(cfg.get("layers"), (list, tuple)):
            raise ValueError(
                "backbone vision_cfg.layers is a list, which open_clip builds as a ResNet image "
                "tower; clsclip needs a ViT (vision_cfg.layers: the number of blocks)"
            )
        for key, bound in keys.items():
            value = cfg.get(key)
            if key == "image_size" and isinstance(value, (list, tuple)):
                for side in value:
                    check_int(f"backbone {tower}.{key} entry", side, minimum=1, maximum=bound)
            elif value is not None:
                check_int(f"backbone {tower}.{key}", value, minimum=1, maximum=bound)
        ratio = cfg.get("mlp_ratio")
        if ratio is not None:
            check_number(f"backbone {tower}.mlp_ratio", ratio, maximum=MAX_RATIO)
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
    parameters = _parameters(vision, width, 12) + _parameters(text, text.get("width", 512), 12)
    parameters += int(text.get("vocab_size", 49408)) * int(text.get("width", 512))
    if parameters > MAX_PARAMETERS:
        raise ValueError(
            f"backbone dict describes about {parameters / 1e9:.0f} billion parameters, over the "
            f"limit of {MAX_PARAMETERS / 1e9:.0f} billion; check its layers and widths"
        )


def _parameters(tower: Mapping[str, Any], width: int, default_layers: int) -> int:
    """Weights of a transformer tower's blocks: attention 4 w^2, MLP 2 r w^2 per block."""
    ratio = float(tower.get("mlp_ratio", 4.0))
    return int(tower.get("layers", default_layers)) * int((4 + 2 * ratio) * width * width)


WEIGHTS_SUFFIXES = (".bin", ".pt", ".pth", ".safetensors")
"""File name endings that make ``pretrained`` a checkpoint file rather than an open_clip tag."""


def is_weights_file(pretrained: str) -> bool:
    """Whether ``pretrained`` names a checkpoint file (an existing file, or a path with a
    weights file's ending) rather than an open_clip tag."""
    return os.path.isfile(pretrained) or pretrained.lower().endswith(WEIGHTS_SUFFIXES)


def _check_templates(templates: object) -> None:
    if not isinstance(templates, tuple) or not templates:
        raise ValueError(f"prompt_templates must be a non-empty tuple of str, got {templates!r}")
    for template in templates:
        if not isinstance(template, str) or template.count("{}") != 1:
            raise ValueError(
                f"each prompt template must be a str with exactly one '{{}}', got {template!r}"
            )


PROMPT_RULES = ("mean", "max")
"""How the prompts of one class spec are combined (`clsclip.classes.PROMPT_RULES`)."""
MAX_LOGIT_SCALE = 1e3


def _check_class_thresholds(thresholds: object) -> None:
    if not isinstance(thresholds, Mapping):
        raise TypeError(f"class_thresholds must map class names to thresholds, got {thresholds!r}")
    for name, value in thresholds.items():
        if not isinstance(name, str) or not name.strip():
            raise ValueError(f"class_thresholds: {name!r} is not a class name")
        try:
            check_threshold(value)
        except (TypeError, ValueError) as e:
            raise type(e)(f"class_thresholds[{name!r}]: {e}") from None


def calibration_entry(calibration: Mapping[str, Any], name: str) -> tuple[float, float]:
    """``(scale, bias)`` of one class: its own entry, else the default one, else (1, 0)."""
    entry = calibration.get("classes", {}).get(name) or calibration.get("default")
    if not entry:
        return 1.0, 0.0
    return float(entry["scale"]), float(entry["bias"])


def _check_calibration(calibration: object) -> None:
    if not isinstance(calibration, Mapping):
        raise TypeError(f"calibration must be a mapping or None, got {type(calibration).__name__}")
    classes = calibration.get("classes", {})
    if not isinstance(classes, Mapping):
        raise TypeError("calibration['classes'] must map class names to {scale, bias}")
    entries = [(f"calibration['classes'][{k!r}]", v) for k, v in classes.items()]
    if calibration.get("default") is not None:
        entries.append(("calibration['default']", calibration["default"]))
    for where, entry in entries:
        if not isinstance(entry, Mapping) or set(entry) != {"scale", "bias"}:
            raise ValueError(f"{where} must be {{'scale': a, 'bias': b}}, got {entry!r}")
        check_number(f"{where} scale", entry["scale"], maximum=MAX_LOGIT_SCALE)
        check_number(f"{where} bias", entry["bias"], maximum=MAX_LOGIT_SCALE, positive=False)

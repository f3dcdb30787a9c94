"""Model configuration: frozen dataclasses, saved as JSON.

Every hyperparameter of a model lives here; `clsclip.model.builder.build_model` is the one place
that turns a config into modules. `ClsClipConfig` describes ClsCLIP, `ClipSegConfig` CLIPSeg.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from clsclip.config.base import (
    FORMAT_VERSION,
    IMAGENET_MEAN,
    IMAGENET_STD,
    MAX_CONTEXT,
    MAX_IMAGE_SIZE,
    MAX_NORMALISATION,
    ModelConfig,
    read_json,
)
from clsclip.config.clipseg_config import ClipSegConfig
from clsclip.config.clsclip_config import ClsClipConfig
from clsclip.config.dense_config import DenseClipConfig

AnyConfig = ClsClipConfig | ClipSegConfig | DenseClipConfig
CONFIG_TYPES: tuple[type[ClsClipConfig] | type[ClipSegConfig] | type[DenseClipConfig], ...] = (
    ClsClipConfig,
    ClipSegConfig,
    DenseClipConfig,
)
_CONFIG_TYPES = {config.MODEL_TYPE: config for config in CONFIG_TYPES}


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


__all__ = [
    "FORMAT_VERSION",
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "MAX_CONTEXT",
    "MAX_IMAGE_SIZE",
    "MAX_NORMALISATION",
    "AnyConfig",
    "ClipSegConfig",
    "CONFIG_TYPES",
    "ClsClipConfig",
    "DenseClipConfig",
    "ModelConfig",
    "config_from_dict",
    "read_json",
]

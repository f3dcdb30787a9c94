"""Reading and writing model folders: ``config.json`` + ``model.safetensors`` (or a transformers
CLIPSeg checkpoint), and exported ONNX folders."""

from __future__ import annotations

import logging
import os
from pathlib import Path

from clsclip.config import AnyConfig, config_from_dict
from clsclip.hub import CONFIG_NAME, WEIGHTS_NAME, resolve_model_files
from clsclip.model import SegmentationModel, build_model
from clsclip.safe_write import write_folder
from clsclip.weights import (
    config_digest,
    file_has_backbone,
    load_transformers_clipseg,
    load_weights,
    save_weights,
)

logger = logging.getLogger(__name__)


def load_model_folder(
    source: str | os.PathLike[str],
    *,
    revision: str | None = None,
    cache_dir: str | None = None,
    local_files_only: bool = False,
    token: str | bool | None = None,
    verify: bool = True,
) -> tuple[SegmentationModel, AnyConfig]:
    """The model and config of a local folder or Hub repo (see `Segmenter.from_pretrained`)."""
    files = resolve_model_files(
        source,
        revision=revision,
        cache_dir=cache_dir,
        local_files_only=local_files_only,
        token=token,
    )
    config = config_from_dict(files.config_data)
    if files.config_data.get("model_type") == "clipseg":  # a transformers checkpoint: convert it
        model = build_model(config, load_backbone_weights=False)
        load_transformers_clipseg(model, files.weights)
        logger.info("converted transformers CLIPSeg checkpoint %s", source)
        return model, config
    has_backbone = file_has_backbone(files.weights)
    if not has_backbone and config.pretrained is None:
        raise ValueError(
            f"{files.weights} holds no backbone weights and config.pretrained is None, so the "
            "backbone would be random; save the model with include_backbone=True"
        )
    model = build_model(config, load_backbone_weights=not has_backbone, cache_dir=cache_dir)
    load_weights(model, files.weights, config_hash=config_digest(files.config_data), verify=verify)
    logger.info("loaded clsclip model from %s", source)
    return model, config


def load_onnx_folder(source: str | os.PathLike[str]) -> tuple[SegmentationModel, AnyConfig]:
    """onnxruntime sessions of a folder written by `clsclip.export.export_onnx`, and its config."""
    from clsclip.model.onnx_model import OnnxModel, read_description

    folder = Path(source)
    description = read_description(folder)
    config = config_from_dict(description["config"])
    model = OnnxModel(folder, description)
    logger.info("loaded exported clsclip model from %s (onnxruntime)", source)
    return model, config


def save_model_folder(
    model: SegmentationModel, config: AnyConfig, folder: Path, *, include_backbone: bool
) -> Path:
    """Write ``config.json`` and ``model.safetensors`` into ``folder``.

    The model is written complete into a hidden sibling folder and swapped in, so an
    interruption leaves the old model or the new one, never a mix of the two; the config's hash
    in the weights' metadata refuses a mixed folder made any other way. Files already in the
    folder (a README) are kept.
    """
    digest = config_digest(config.to_file_dict())

    def write(tmp: Path) -> None:
        save_weights(
            model, tmp / WEIGHTS_NAME, include_backbone=include_backbone, config_hash=digest
        )
        config.save(tmp / CONFIG_NAME)

    stale = {f".{WEIGHTS_NAME}.tmp", f".{CONFIG_NAME}.tmp"}  # clsclip 0.1's
    write_folder(folder, write, replaces={WEIGHTS_NAME, CONFIG_NAME, *stale})
    logger.info("saved clsclip model to %s", folder)
    return folder

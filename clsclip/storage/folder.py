"""A saved model folder: ``config.json`` beside ``model.safetensors``, written as one unit."""

from __future__ import annotations

import logging
import os
from pathlib import Path

from torch import nn

from clsclip.config import ModelConfig
from clsclip.storage.files import write_folder
from clsclip.storage.weights import check_finite, config_digest, save_weights

logger = logging.getLogger(__name__)

CONFIG_NAME = "config.json"
WEIGHTS_NAME = "model.safetensors"
PICKLE_WEIGHTS_NAME = "pytorch_model.bin"
"""transformers' pickled weights: read (``weights_only``) for CLIPSeg checkpoints only."""


def save_model_folder(
    model: nn.Module, config: ModelConfig, folder: Path, *, include_backbone: bool
) -> Path:
    """Write ``config.json`` and ``model.safetensors`` into ``folder``.

    The model is written complete into a hidden sibling folder and swapped in, so an
    interruption leaves the old model or the new one, never a mix of the two; the config's hash
    in the weights' metadata refuses a mixed folder made any other way. Files already in the
    folder (a README) are kept.
    """
    check_finite(model.state_dict(), os.fspath(folder), writing=True)
    digest = config_digest(config.to_file_dict())

    def write(tmp: Path) -> None:
        save_weights(
            model, tmp / WEIGHTS_NAME, include_backbone=include_backbone, config_hash=digest
        )
        config.save(tmp / CONFIG_NAME)

    stale = {f".{WEIGHTS_NAME}.tmp", f".{CONFIG_NAME}.tmp"}  # left by the first releases
    write_folder(folder, write, replaces={WEIGHTS_NAME, CONFIG_NAME, *stale})
    logger.info("saved clsclip model to %s", folder)
    return folder

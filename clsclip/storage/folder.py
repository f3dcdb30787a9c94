"""A saved model folder: ``config.json`` beside ``model.safetensors``, written as one unit."""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import TYPE_CHECKING

from clsclip.config import ModelConfig
from clsclip.storage.files import write_folder

if TYPE_CHECKING:
    from torch import nn

logger = logging.getLogger(__name__)

CONFIG_NAME = "config.json"
WEIGHTS_NAME = "model.safetensors"
PICKLE_WEIGHTS_NAME = "pytorch_model.bin"
"""transformers' pickled weights: read (``weights_only``) for CLIPSeg checkpoints only."""


def save_model_folder(
    model: nn.Module, config: ModelConfig, folder: Path, *, include_backbone: bool
) -> Path:
    """Write ``config.json`` and ``model.safetensors`` into ``folder``.

    A model with nothing but a pretrained backbone (training-free) is its ``config.json``
    alone. The model is written complete into a hidden sibling folder and swapped in, so an
    interruption leaves the old model or the new one, never a mix of the two; the config's hash
    in the weights' metadata refuses a mixed folder made any other way. Files already in the
    folder (a README) are kept.
    """
    from clsclip.storage.weights import BACKBONE_PREFIX, check_finite, config_digest, save_weights

    check_finite(model.state_dict(), os.fspath(folder), writing=True)
    digest = config_digest(config.to_file_dict())

    stored = include_backbone or any(
        not key.startswith(BACKBONE_PREFIX) for key in model.state_dict()
    )

    def write(tmp: Path) -> None:
        if stored:  # a training-free model on a pretrained backbone has nothing to store
            save_weights(
                model, tmp / WEIGHTS_NAME, include_backbone=include_backbone, config_hash=digest
            )
        config.save(tmp / CONFIG_NAME)

    stale = {f".{WEIGHTS_NAME}.tmp", f".{CONFIG_NAME}.tmp"}  # left by the first releases
    write_folder(folder, write, replaces={WEIGHTS_NAME, CONFIG_NAME, *stale})
    logger.info("saved clsclip model to %s", folder)
    return folder

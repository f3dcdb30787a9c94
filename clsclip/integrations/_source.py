"""What every integration needs: the segmenter it runs, and images as the segmenter takes them."""

from __future__ import annotations

import os
from typing import Any

import numpy as np
from PIL import Image

from clsclip.segmenter import Segmenter


def load_segmenter(model: Segmenter | str | os.PathLike[str], **load: Any) -> Segmenter:
    """``model`` itself, or `Segmenter.from_pretrained(model, **load)`."""
    if isinstance(model, Segmenter):
        if load:
            raise TypeError(
                f"loading options {sorted(load)} need a model folder or id, not a Segmenter"
            )
        return model
    if not isinstance(model, str | os.PathLike):
        raise TypeError(
            f"model must be a Segmenter, a folder or a Hub id, not {type(model).__name__}"
        )
    return Segmenter.from_pretrained(model, **load)


def rgb_image(image: Any) -> Any:
    """An RGB PIL image from an ``H x W``, ``H x W x 1`` or ``H x W x 4`` uint8 array (gray,
    RGBA); an ``H x W x 3`` array and anything else as it is (the segmenter checks it)."""
    if isinstance(image, np.ndarray) and image.dtype == np.uint8:
        if image.ndim == 3 and image.shape[2] == 1:
            image = image[..., 0]
        if image.ndim == 2 or (image.ndim == 3 and image.shape[2] == 4):
            return Image.fromarray(image).convert("RGB")
    return image

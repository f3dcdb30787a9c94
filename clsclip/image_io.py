"""Reading user images: PIL images, numpy arrays and files, all turned into 8-bit RGB."""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from typing import Union

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

_PIL_OPEN = Image.open  # before anything patches it (see _pil_open)

ImageInput = Union[Image.Image, np.ndarray, str, "os.PathLike[str]"]
"""What `Segmenter.segment` accepts as an image: a PIL image, an ``H x W x 3`` uint8 RGB array,
or the path of an image file."""


def load_image(image: ImageInput) -> Image.Image:
    """Return ``image`` as an 8-bit RGB PIL image with its EXIF orientation applied.

    Grayscale, palette, RGBA/LA (composited over white), CMYK, 16-bit and float images are
    converted. Raises `TypeError` for an unsupported type, `ValueError` for a zero-size image or
    an array of the wrong shape or dtype, `FileNotFoundError` / `IsADirectoryError` for a bad
    path and `OSError` for a file that cannot be decoded.
    """
    if isinstance(image, Image.Image):
        pil = image
    elif isinstance(image, np.ndarray):
        pil = _from_array(image)
    elif isinstance(image, (str, os.PathLike)):
        pil = _open(os.fspath(image))
    else:
        raise TypeError(
            "image must be a PIL.Image.Image, an H x W x 3 uint8 numpy array or a file path, "
            f"got {type(image).__name__}"
        )
    if pil.width == 0 or pil.height == 0:
        raise ValueError(f"image has zero size ({pil.width} x {pil.height} pixels)")
    pil = ImageOps.exif_transpose(pil) or pil
    return _to_rgb(pil)


def _from_array(array: np.ndarray) -> Image.Image:
    if array.ndim != 3 or array.shape[2] != 3:
        raise ValueError(
            f"numpy image must have shape H x W x 3 (RGB), got {array.shape}; stack a grayscale "
            "image to 3 channels or drop the alpha channel first"
        )
    if array.dtype != np.uint8:
        raise ValueError(
            f"numpy image must have dtype uint8 (0..255), got {array.dtype}; for floats in [0, 1] "
            "use (array * 255).round().astype(np.uint8)"
        )
    if array.shape[0] == 0 or array.shape[1] == 0:
        raise ValueError(f"image has zero size ({array.shape[1]} x {array.shape[0]} pixels)")
    return Image.fromarray(np.ascontiguousarray(array), mode="RGB")


def _open(path: str) -> Image.Image:
    if not os.path.exists(path):
        raise FileNotFoundError(f"image file not found: {path!r}")
    if os.path.isdir(path):
        raise IsADirectoryError(f"{path!r} is a folder, not an image file")
    try:
        with _pil_open()(path) as opened:
            opened.load()
            return opened.copy()
    except UnidentifiedImageError as e:
        raise OSError(f"cannot decode image file {path!r}: not an image format PIL can read") from e
    except PermissionError:
        raise
    except (OSError, SyntaxError, ValueError) as e:
        raise OSError(f"cannot decode image file {path!r}: {e}") from e


def _pil_open() -> Callable[..., Image.Image]:
    """PIL's own ``Image.open``.

    Importing ultralytics replaces ``PIL.Image.open`` with a wrapper that, on an undecodable
    file, tries to pip-install a HEIF plugin at run time; clsclip reports such a file instead.
    """
    opener = Image.open
    if getattr(opener, "__module__", "").startswith("ultralytics"):
        patches = sys.modules.get("ultralytics.utils.patches")
        return getattr(patches, "_image_open", _PIL_OPEN)
    return opener


def _to_rgb(image: Image.Image) -> Image.Image:
    mode = image.mode
    if mode == "RGB":
        return image
    if mode in ("I;16", "I;16B", "I;16L", "I;16N", "I", "F"):
        return _high_depth_to_rgb(image)
    if mode == "P":
        image = image.convert("RGBA")
        mode = "RGBA"
    if mode in ("RGBA", "LA", "PA", "RGBa", "La"):
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    return image.convert("RGB")


def _high_depth_to_rgb(image: Image.Image) -> Image.Image:
    """16-bit and 32-bit integer images are scaled from 0..65535; float images from 0..1.

    PIL's own conversion clips these to 0..255 instead of scaling them.
    """
    values = np.asarray(image).astype(np.float64)
    if image.mode == "F":
        scale = 1.0 if np.nanmax(values) <= 1.0 else 255.0
    elif image.mode == "I" and np.max(values) <= 255:
        scale = 255.0
    else:
        scale = 65535.0
    gray = np.clip(np.nan_to_num(values) / scale * 255.0, 0, 255).round().astype(np.uint8)
    return Image.fromarray(np.stack([gray] * 3, axis=-1), mode="RGB")

"""Reading user images: PIL images, numpy arrays and files, all turned into 8-bit RGB."""

from __future__ import annotations

import io
import os
import stat
import sys
from collections.abc import Callable
from typing import Union

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from clsclip.checks import MAX_IMAGE_PIXELS

_PIL_OPEN = Image.open  # before anything patches it (see _pil_open)

ImageInput = Union[Image.Image, np.ndarray, str, "os.PathLike[str]", bytes]
"""What `Segmenter.segment` accepts as an image: a PIL image, an ``H x W x 3`` RGB array (uint8
in 0..255, or floating point in [0, 1]), the path of an image file, or an encoded image file's
bytes (PNG, JPEG, ...: what an upload or a Ray pipeline carries)."""

_ORIENTATION = 0x0112  # the EXIF tag

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp")
"""File name endings of image files, as folders are read (``clsclip segment``, dataset roots)."""


def load_image(image: ImageInput, *, max_pixels: int | None = MAX_IMAGE_PIXELS) -> Image.Image:
    """Return ``image`` as an 8-bit RGB PIL image with its EXIF orientation applied.

    Grayscale, palette, RGBA/LA (composited over white), CMYK, 16-bit and float images are
    converted; float pixels (PIL mode "F", float arrays) are read as [0, 1] and clipped. A file
    is checked against ``max_pixels`` from its header, before decoding (None: no limit beyond
    PIL's own). Raises `TypeError` for an unsupported type, `ValueError` for a zero-size image,
    an image over ``max_pixels`` or an array of the wrong shape or dtype, `FileNotFoundError` /
    `IsADirectoryError` for a bad path, and `OSError` for a file that cannot be decoded or is
    not a regular file (a named pipe would block forever).
    """
    if isinstance(image, Image.Image):
        _check_pixels(image.width, image.height, max_pixels, "image")
        pil = image
    elif isinstance(image, np.ndarray):
        if image.ndim >= 2:
            _check_pixels(image.shape[1], image.shape[0], max_pixels, "image")
        pil = _from_array(image)
    elif isinstance(image, (str, os.PathLike)):
        pil = _open(os.fspath(image), max_pixels)
    elif isinstance(image, (bytes, bytearray, memoryview)):
        pil = _decode(io.BytesIO(bytes(image)), max_pixels, "encoded image")
    else:
        raise TypeError(
            "image must be a PIL.Image.Image, an H x W x 3 uint8 numpy array, a file path or "
            f"an encoded image's bytes, got {type(image).__name__}"
        )
    if pil.width == 0 or pil.height == 0:
        raise ValueError(f"image has zero size ({pil.width} x {pil.height} pixels)")
    if pil.getexif().get(_ORIENTATION, 1) not in (None, 1):  # exif_transpose copies otherwise too
        pil = ImageOps.exif_transpose(pil) or pil
    return _to_rgb(pil)


def _from_array(array: np.ndarray) -> Image.Image:
    if array.ndim != 3 or array.shape[2] != 3:
        raise ValueError(
            f"numpy image must have shape H x W x 3 (RGB), got {array.shape}; stack a grayscale "
            "image to 3 channels or drop the alpha channel first"
        )
    if array.shape[0] == 0 or array.shape[1] == 0:
        raise ValueError(f"image has zero size ({array.shape[1]} x {array.shape[0]} pixels)")
    if np.issubdtype(array.dtype, np.floating):
        array = _unit_to_uint8(array)
    elif array.dtype != np.uint8:
        raise ValueError(
            f"numpy image must have dtype uint8 (0..255) or a float dtype (0..1), got "
            f"{array.dtype}; for 16-bit images use (array // 257).astype(np.uint8)"
        )
    return Image.fromarray(np.ascontiguousarray(array), mode="RGB")


def _unit_to_uint8(values: np.ndarray) -> np.ndarray:
    """Floats in [0, 1] -> uint8 0..255. Overshoot (a bicubic 1.02) is clipped, NaN is 0: the
    scale comes from the dtype's convention, never from the values."""
    clean = np.nan_to_num(values.astype(np.float32), nan=0.0, posinf=1.0, neginf=0.0)
    return (np.clip(clean, 0.0, 1.0) * 255.0).round().astype(np.uint8)


def _check_pixels(width: int, height: int, max_pixels: int | None, what: str) -> None:
    if max_pixels is not None and width * height > max_pixels:
        raise ValueError(
            f"{what} is {width} x {height} = {width * height / 1e6:.1f} megapixels, over the "
            f"limit of {max_pixels / 1e6:.1f} (max_image_pixels); raise it with "
            "segmenter.max_image_pixels = N or clsclip segment --max-image-pixels N"
        )


def _open(path: str, max_pixels: int | None) -> Image.Image:
    try:
        mode = os.stat(path).st_mode
    except FileNotFoundError:
        raise FileNotFoundError(f"image file not found: {path!r}") from None
    if stat.S_ISDIR(mode):
        raise IsADirectoryError(f"{path!r} is a folder, not an image file")
    if not stat.S_ISREG(mode):  # opening a FIFO blocks until a writer comes, maybe forever
        raise OSError(f"{path!r} is not a regular file (a pipe, socket or device); not read")
    return _decode(path, max_pixels, f"image file {path!r}")


def _decode(source: str | io.BytesIO, max_pixels: int | None, what: str) -> Image.Image:
    """Decode a file or buffer with PIL, the pixel limit checked from the header first."""
    try:
        with _pil_open()(source) as opened:  # reads the header only
            _check_pixels(opened.width, opened.height, max_pixels, what)
            opened.load()
            return opened.copy()
    except Image.DecompressionBombError as e:  # neither OSError nor ValueError
        raise ValueError(f"{what} refused by PIL as a decompression bomb: {e}") from e
    except UnidentifiedImageError as e:
        raise OSError(f"cannot decode {what}: not an image format PIL can read") from e
    except PermissionError:
        raise
    except ValueError as e:
        if "max_image_pixels" in str(e):
            raise
        raise OSError(f"cannot decode {what}: {e}") from e
    except (OSError, SyntaxError) as e:
        raise OSError(f"cannot decode {what}: {e}") from e


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
    """Integer images ("I;16*" and 32-bit "I") are scaled from 0..65535, float ("F") images from
    0..1: the scale comes from the mode's convention, never from the pixel values (a dark 16-bit
    photo stays dark). PIL's own conversion clips these to 0..255 instead of scaling them."""
    if image.mode == "F":
        gray = _unit_to_uint8(np.asarray(image))
        return Image.fromarray(np.stack([gray] * 3, axis=-1), mode="RGB")
    values = np.asarray(image).astype(np.float64)
    gray = np.clip(np.nan_to_num(values) / 65535.0 * 255.0, 0, 255).round().astype(np.uint8)
    return Image.fromarray(np.stack([gray] * 3, axis=-1), mode="RGB")

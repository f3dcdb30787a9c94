"""Checks of user arguments at the API boundary (class names, numbers, devices) and the
limits they are held to."""

from __future__ import annotations

import math
import numbers
import unicodedata
from collections.abc import Iterable
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # torch is imported where a device is resolved: `clsclip --help` needs none
    import torch

MAX_NAME_CHARS = 1000
"""Longest class name accepted, in characters. CLIP reads at most 77 tokens, so a longer name
cannot be a class name, and open_clip's tokenizer is quadratic in the length of a word."""


MAX_IMAGE_PIXELS = 100_000_000
"""Default limit on the pixels of one image (100 megapixels, e.g. 12000 x 8000): larger images
are refused before they are decoded. ``Segmenter.max_image_pixels`` changes it; result files
(`clsclip.results.npz`) may not declare larger images either."""


def text_key(text: str) -> str:
    """A text as CLIP reads it: Unicode NFC (ftfy's), runs of whitespace as one space,
    lowercased (CLIP's tokenizer lowercases; ``str.lower``, not ``casefold``: "Straße" and
    "STRASSE" are two texts to it). Two texts with one key are one name, one prompt, one row."""
    return " ".join(unicodedata.normalize("NFC", text).split()).lower()


def check_class_names(class_names: object) -> list[str]:
    """Validate class names and return them as a list.

    Raises `TypeError` for a bare string or non-string entries, and `ValueError` for an empty
    list, empty names or names that differ only in case or spacing (CLIP reads them alike).
    """
    if isinstance(class_names, str):
        raise TypeError(
            f"class_names must be a list of strings, got the single string {class_names!r}; "
            f"pass [{class_names!r}]"
        )
    if not isinstance(class_names, Iterable):
        raise TypeError(f"class_names must be a list of strings, got {type(class_names).__name__}")
    names = list(class_names)
    if not names:
        raise ValueError("class_names is empty; pass at least one class name")
    seen: dict[str, int] = {}
    for i, name in enumerate(names):
        if not isinstance(name, str):
            raise TypeError(
                f"class names must be str, got {type(name).__name__} {name!r} at position {i}"
            )
        if len(name) > MAX_NAME_CHARS:
            raise ValueError(
                f"class name at position {i} is {len(name)} characters long ({name[:40]!r}...); "
                f"names are limited to {MAX_NAME_CHARS} characters (CLIP reads at most 77 tokens)"
            )
        key = text_key(name)
        if not key:
            raise ValueError(f"class name at position {i} is empty ({name!r})")
        if key in seen:
            raise ValueError(
                f"duplicate class name {name!r} at positions {seen[key]} and {i} "
                "(names are compared ignoring case and spacing, as CLIP reads them)"
            )
        seen[key] = i
    return names


def resolve_device(device: str | torch.device | None) -> torch.device:
    """Turn a device spec into a usable `torch.device`.

    ``None`` picks CUDA when available, else the CPU. Raises `ValueError` for an unknown device or
    one this machine does not have.
    """
    import torch

    if device is None:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if not isinstance(device, (str, torch.device)):
        raise TypeError(f"device must be a str or torch.device, got {type(device).__name__}")
    try:
        resolved = torch.device(device)
    except (RuntimeError, ValueError) as e:
        raise ValueError(f"unknown device {device!r}; use 'cpu', 'cuda', 'cuda:N' or 'mps'") from e
    if resolved.type == "cuda":
        if not torch.cuda.is_available():
            raise ValueError(f"device {device!r} requested but CUDA is not available here")
        if resolved.index is not None and resolved.index >= torch.cuda.device_count():
            raise ValueError(
                f"device {device!r} does not exist: {torch.cuda.device_count()} CUDA device(s)"
            )
    elif resolved.type == "mps" and not torch.backends.mps.is_available():
        raise ValueError(f"device {device!r} requested but MPS is not available here")
    elif resolved.type not in ("cpu", "cuda", "mps"):
        raise ValueError(f"unsupported device {device!r}; use 'cpu', 'cuda', 'cuda:N' or 'mps'")
    return resolved


def check_int(name: str, value: object, *, minimum: int = 1, maximum: int | None = None) -> int:
    """Return ``value`` if it is an int in [minimum, maximum], else raise `TypeError` /
    `ValueError` naming ``name`` and the bound."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be an int, got {value!r}")
    if value < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value}")
    if maximum is not None and value > maximum:
        raise ValueError(f"{name} must be <= {maximum}, got {value}")
    return value


def check_number(name: str, value: object, *, maximum: float, positive: bool = True) -> float:
    """Return ``value`` as a float if it is a finite real number (positive, when asked) of at
    most ``maximum`` in magnitude, else raise `ValueError` naming ``name`` and the bound."""
    if (
        isinstance(value, bool)
        or not isinstance(value, numbers.Real)
        or not math.isfinite(float(value))
        or (positive and not float(value) > 0)
        or abs(float(value)) > maximum
    ):
        kind = "positive " if positive else ""
        raise ValueError(
            f"{name} must be a finite {kind}number of at most {maximum:g}, got {value!r}"
        )
    return float(value)


def check_threshold(value: object) -> float:
    """Return ``value`` as a float if it is a real number in [0, 1] (Python or numpy scalars),
    else raise `ValueError`."""
    if (
        isinstance(value, bool)
        or not isinstance(value, numbers.Real)
        or not math.isfinite(float(value))
        or not 0 <= float(value) <= 1
    ):
        raise ValueError(f"threshold must be a number in [0, 1], got {value!r}")
    return float(value)

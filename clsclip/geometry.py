"""Where an image sits inside the square model input, and where a crop sits inside the image.

Pure coordinates, no pixels: the way in (`clsclip.pipeline.letterbox`) and the way back
(`clsclip.results.restore`) both read them.
"""

from __future__ import annotations

from dataclasses import dataclass

RESIZE_MODES = ("letterbox", "resize")
"""How an image becomes the square input: long side fitted and padded, or stretched."""

Region = tuple[int, int, int, int]
"""An integer crop ``x0, y0, x1, y1`` in pixels of the original image, exclusive end."""


@dataclass(frozen=True)
class Letterbox:
    """Where an image sits inside the square model input.

    The image is resized so that its long side is ``input_size`` (aspect ratio kept) and placed at
    the top-left corner; the rest is padding.

    Attributes:
        original_size: ``(H, W)`` of the image in pixels.
        resized_size: ``(h, w)`` of the resized image inside the input, each >= 1.
        input_size: side of the square model input in pixels.
    """

    original_size: tuple[int, int]
    resized_size: tuple[int, int]
    input_size: int

    @classmethod
    def for_mode(cls, original_size: tuple[int, int], input_size: int, mode: str) -> Letterbox:
        """`fit` for ``"letterbox"``; for ``"resize"`` the image fills the whole input."""
        if mode == "resize":
            square = (input_size, input_size)
            return cls(original_size=original_size, resized_size=square, input_size=input_size)
        if mode != "letterbox":
            raise ValueError(f"unknown resize mode {mode!r}; choose one of {list(RESIZE_MODES)}")
        return cls.fit(original_size, input_size)

    @classmethod
    def fit(cls, original_size: tuple[int, int], input_size: int) -> Letterbox:
        height, width = original_size
        scale = input_size / max(height, width)
        resized = (
            min(input_size, max(1, round(height * scale))),
            min(input_size, max(1, round(width * scale))),
        )
        return cls(original_size=(height, width), resized_size=resized, input_size=input_size)

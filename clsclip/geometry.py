"""Where an image sits inside the square model input, and where a crop sits inside the image.

Pure coordinates, no pixels: the way in (`clsclip.pipeline.letterbox`) and the way back
(`clsclip.results.restore`) both read them.
"""

from __future__ import annotations

from dataclasses import dataclass

RESIZE_MODES = ("letterbox", "resize", "short-side")
"""How an image becomes the model input: long side fitted into the square and padded
(``"letterbox"``), stretched to the square (``"resize"``), or, for the training-free models, short
side to the input size with the aspect ratio kept and no padding (``"short-side"``, the
references' ``Resize(scale=(2048, size), keep_ratio=True)``: a non-square input)."""

MAX_LONG_SIDE = 2048
"""The long side of a ``"short-side"`` input is at most this (the references' 2048)."""

Region = tuple[int, int, int, int]
"""An integer crop ``x0, y0, x1, y1`` in pixels of the original image, exclusive end."""


@dataclass(frozen=True)
class Letterbox:
    """Where an image sits inside the model input.

    The image is resized so that its long side is ``input_size`` (aspect ratio kept) and placed at
    the top-left corner; the rest is padding. A ``"short-side"`` input is the resized image
    itself, not square and not padded: then ``padded`` is False and ``input_size`` is its long
    side.

    Attributes:
        original_size: ``(H, W)`` of the image in pixels.
        resized_size: ``(h, w)`` of the resized image inside the input, each >= 1.
        input_size: side of the square model input in pixels.
        padded: whether the input is the ``input_size`` square (False: the resized image).
    """

    original_size: tuple[int, int]
    resized_size: tuple[int, int]
    input_size: int
    padded: bool = True

    @property
    def input_shape(self) -> tuple[int, int]:
        """``(rows, cols)`` of the model input in pixels."""
        return (self.input_size, self.input_size) if self.padded else self.resized_size

    @classmethod
    def for_mode(
        cls,
        original_size: tuple[int, int],
        input_size: int,
        mode: str,
        max_long_side: int = MAX_LONG_SIDE,
    ) -> Letterbox:
        """`fit` for ``"letterbox"``; for ``"resize"`` the image fills the whole input; for
        ``"short-side"`` see `short_side`."""
        if mode == "short-side":
            return cls.short_side(original_size, input_size, max_long_side)
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

    @classmethod
    def short_side(
        cls, original_size: tuple[int, int], size: int, max_long_side: int = MAX_LONG_SIDE
    ) -> Letterbox:
        """The references' (mmcv's ``imrescale``) keep-ratio resize: scale by
        ``min(size / short side, max_long_side / long side)``, each side ``int(side * scale +
        0.5)`` (at least 1); the input is the resized image, unpadded."""
        height, width = original_size
        scale = min(size / min(height, width), max_long_side / max(height, width))
        resized = (max(1, int(height * scale + 0.5)), max(1, int(width * scale + 0.5)))
        return cls(original_size=(height, width), resized_size=resized,
                   input_size=max(resized), padded=False)  # fmt: skip

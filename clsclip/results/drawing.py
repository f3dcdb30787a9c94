"""Colours and overlays for segmentation results."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence

import numpy as np
from PIL import Image, ImageDraw, ImageFont

_BAND_PIXELS = 2**20


def palette(num_colors: int) -> np.ndarray:
    """``num_colors x 3`` uint8 RGB colours, distinct and stable for a given index.

    The PASCAL VOC colour map (bit-interleaved index), skipping its black entry 0, so class k
    always gets the same colour whatever else is segmented.
    """
    colors = np.zeros((num_colors, 3), dtype=np.uint8)
    for k in range(num_colors):
        index, r, g, b = k + 1, 0, 0, 0
        for bit in range(8):
            r |= ((index >> 0) & 1) << (7 - bit)
            g |= ((index >> 1) & 1) << (7 - bit)
            b |= ((index >> 2) & 1) << (7 - bit)
            index >>= 3
        colors[k] = (r, g, b)
    return colors


def overlay_label_map(
    image: Image.Image,
    label_map: np.ndarray,
    class_names: Sequence[str],
    *,
    alpha: float = 0.5,
    legend: bool = True,
) -> Image.Image:
    """Blend class colours over ``image`` where ``label_map`` (``H x W``, 0 = background, k + 1 =
    class k) is non-zero, and draw a legend of the classes present in the top-left corner."""
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"alpha must be in [0, 1], got {alpha}")
    if label_map.shape != (image.height, image.width):
        raise ValueError(
            f"label map {label_map.shape} does not match the image ({image.height}, {image.width})"
        )
    rgb = np.asarray(image.convert("RGB"))
    colors = np.concatenate([np.zeros((1, 3), np.uint8), palette(len(class_names))])
    out_array = rgb.copy()
    band = max(1, _BAND_PIXELS // max(1, image.width))  # bounded float temporaries
    for start in range(0, image.height, band):
        labels = label_map[start : start + band]
        base = rgb[start : start + band].astype(np.float32)
        blend = (1 - alpha) * base + alpha * colors[labels].astype(np.float32)
        out_array[start : start + band] = np.where(labels[..., None] > 0, blend.round(), base)
    out = Image.fromarray(out_array, mode="RGB")
    if legend:
        counts = np.bincount(label_map.ravel(), minlength=len(class_names) + 1)
        present = [k for k in range(1, len(counts)) if counts[k]]
        _draw_legend(out, [(class_names[k - 1], tuple(colors[k].tolist())) for k in present])
    return out


def draw_boxes(
    image: Image.Image, boxes: Sequence[Sequence[float]], color: tuple[int, int, int]
) -> Image.Image:
    """Draw ``x0, y0, x1, y1`` pixel boxes (exclusive end) on a copy of ``image``."""
    out = image.copy()
    draw = ImageDraw.Draw(out)
    width = max(1, round(min(image.size) / 200))
    for x0, y0, x1, y1 in boxes:
        draw.rectangle([x0, y0, x1 - 1, y1 - 1], outline=color, width=width)
    return out


def _draw_legend(image: Image.Image, entries: Sequence[tuple[str, tuple[int, ...]]]) -> None:
    if not entries:
        return
    draw = ImageDraw.Draw(image)
    size = max(10, min(image.size) // 30)
    font = ImageFont.load_default(size=size)
    pad = max(2, size // 4)
    y = pad
    for name, color in entries:
        _left, top, right, bottom = draw.textbbox((0, 0), name, font=font)
        box_h = int(bottom - top) + 2 * pad
        draw.rectangle([pad, y, pad + size + right + 3 * pad, y + box_h], fill=(0, 0, 0))
        draw.rectangle([2 * pad, y + pad, 2 * pad + size - 1, y + box_h - pad], fill=color)
        draw.text((3 * pad + size, y + pad - top), name, fill=(255, 255, 255), font=font)
        y += box_h + pad
        if y > image.height:
            break


class MaskImages(Mapping[str, Image.Image]):
    """Class name -> its mask as an 8-bit grayscale image (255 inside), computed on lookup."""

    def __init__(self, names: list[str], mask: Callable[[str], np.ndarray]) -> None:
        self._names, self._mask = names, mask

    def __getitem__(self, name: str) -> Image.Image:
        return Image.fromarray(self._mask(name).astype(np.uint8) * 255, mode="L")

    def __iter__(self) -> Iterator[str]:
        return iter(self._names)

    def __len__(self) -> int:
        return len(self._names)

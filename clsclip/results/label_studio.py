"""Label Studio pre-annotations: brush regions in Label Studio's own RLE, and the labelling
config (``BrushLabels``) that shows them (see docs/labelling.md, "Into annotation tools").

Label Studio's brush RLE is a bit stream over the RGBA bytes of the mask image (row-major, 4
bytes a pixel, 0 or 255): a 32-bit count of bytes, the word size less one (5 bits), four run
length field sizes less one (4 bits each), then runs: a repeat flag (1 bit), which of the four
length fields follows (2 bits), the run length less one, and the repeated byte (8 bits). Bits
are packed most significant first; the result is the list of byte values. This module writes
repeat runs only (a mask is runs of 0 and 255), vectorised with numpy.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from typing import Any
from xml.sax.saxutils import quoteattr

import numpy as np

WORD_SIZE = 8
RUN_FIELDS = (3, 4, 8, 16)  # bits of the length field a run may use
MAX_RUN = 1 << RUN_FIELDS[-1]
FIELD_BITS = 1 + 2 + RUN_FIELDS[-1] + WORD_SIZE  # the widest run: 27 bits


def brush_rle(mask: np.ndarray) -> list[int]:
    """A boolean ``H x W`` mask in Label Studio's brush RLE (``value.rle`` of a
    ``brushlabels`` result)."""
    if mask.ndim != 2:
        raise ValueError(f"a mask must be H x W, got shape {mask.shape}")
    flat = np.repeat(mask.reshape(-1).astype(bool), 4)  # RGBA: the same byte four times
    count = int(flat.size)
    header = _bits(count, 32) + _bits(WORD_SIZE - 1, 5)
    header += [b for size in RUN_FIELDS for b in _bits(size - 1, 4)]
    if count == 0:
        return _pack(np.asarray(header, dtype=np.uint8))
    change = np.flatnonzero(flat[1:] != flat[:-1]) + 1
    starts = np.concatenate([[0], change])
    lengths = np.diff(np.concatenate([starts, [count]]))
    values = flat[starts].astype(np.int64) * 255
    pieces = -(-lengths // MAX_RUN)  # runs longer than the widest field are split
    values = np.repeat(values, pieces)
    lengths = _split(lengths, pieces)
    field = np.searchsorted(np.asarray([1 << s for s in RUN_FIELDS]), lengths)  # smallest fit
    sizes = np.asarray(RUN_FIELDS)[field]
    code = (1 << (2 + sizes + WORD_SIZE)) | (field << (sizes + WORD_SIZE))
    code |= (lengths - 1) << WORD_SIZE
    code |= values
    widths = 1 + 2 + sizes + WORD_SIZE
    shifts = np.arange(FIELD_BITS - 1, -1, -1)
    bits = (code[:, None] >> shifts[None, :]) & 1  # each run's code, right-aligned in 27 bits
    used = shifts[None, :] < widths[:, None]
    stream = np.concatenate([np.asarray(header, dtype=np.uint8), bits[used].astype(np.uint8)])
    return _pack(stream)


def _split(lengths: np.ndarray, pieces: np.ndarray) -> np.ndarray:
    """Each run as ``pieces`` runs of at most `MAX_RUN` (all full but the last)."""
    if (pieces == 1).all():
        return lengths.astype(np.int64)
    out = np.full(int(pieces.sum()), MAX_RUN, dtype=np.int64)
    last = np.cumsum(pieces) - 1
    out[last] = lengths - (pieces - 1) * MAX_RUN
    return out


def _bits(value: int, width: int) -> list[int]:
    return [(value >> (width - 1 - i)) & 1 for i in range(width)]


def _pack(bits: np.ndarray) -> list[int]:
    return [int(b) for b in np.packbits(bits)]  # pads the last byte with zeros


def region_id(*parts: object) -> str:
    """A stable 10-character id for a region (Label Studio's ids are short strings)."""
    return hashlib.sha1("\0".join(map(str, parts)).encode()).hexdigest()[:10]


def brush_results(
    masks: Sequence[tuple[str, np.ndarray, float]],
    size: tuple[int, int],
    *,
    from_name: str = "label",
    to_name: str = "image",
) -> list[dict[str, Any]]:
    """Label Studio ``result`` entries: one ``brushlabels`` region per ``(class name, mask,
    score)`` with a non-empty mask, at the image's ``(H, W)``."""
    height, width = size
    out = []
    for i, (name, mask, score) in enumerate(masks):
        if not mask.any():
            continue
        out.append({
            "id": region_id(name, i, height, width, int(mask.sum())),
            "from_name": from_name,
            "to_name": to_name,
            "type": "brushlabels",
            "original_width": width,
            "original_height": height,
            "image_rotation": 0,
            "value": {"format": "rle", "rle": brush_rle(mask), "brushlabels": [name]},
            "score": round(float(score), 6),
            "readonly": False,
        })  # fmt: skip
    return out


def check_label_names(class_names: Sequence[str]) -> None:
    """`ValueError` naming a class whose name XML 1.0 cannot hold (a control character other
    than tab, newline and carriage return): the labelling config would be invalid."""
    for name in class_names:
        if any((ord(c) < 32 and c not in "\t\n\r") or 0xFFFE <= ord(c) <= 0xFFFF for c in name):
            raise ValueError(
                f"class {name!r} has a control character, which Label Studio's XML config "
                "cannot hold; rename it"
            )


def labeling_config(
    class_names: Sequence[str],
    colors: Sequence[Sequence[int]],
    *,
    from_name: str = "label",
    to_name: str = "image",
) -> str:
    """The labelling config XML whose ``BrushLabels`` shows the predictions (a ``$image`` task
    field, one label per class in its palette colour)."""
    check_label_names(class_names)
    lines = [
        "<View>",
        f'  <Image name={quoteattr(to_name)} value="$image" zoom="true"/>',
        f"  <BrushLabels name={quoteattr(from_name)} toName={quoteattr(to_name)}>",
    ]
    for name, color in zip(class_names, colors, strict=True):
        hex_color = "#{:02x}{:02x}{:02x}".format(*(int(c) for c in color[:3]))
        lines.append(f"    <Label value={quoteattr(name)} background={quoteattr(hex_color)}/>")
    lines += ["  </BrushLabels>", "</View>", ""]
    return "\n".join(lines)

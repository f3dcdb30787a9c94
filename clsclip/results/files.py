"""Writing a result's files: one mask PNG per class, the overlay and the JSON summary, each
written atomically under the names `clsclip.names` gives."""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, BinaryIO

from PIL import Image

from clsclip import names
from clsclip.storage.files import write_atomic, write_json


def save_result(
    out_dir: str | os.PathLike[str],
    stem: str,
    masks: Mapping[str, Image.Image],
    overlay: Callable[[], Image.Image] | None,
    summary: dict[str, Any],
) -> list[Path]:
    """`SegmentationResult.save`: each class's mask PNG (made as it is written), the overlay
    when there is one, the JSON summary; returns the paths written."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = []
    for k, (name, image) in enumerate(masks.items()):
        path = out / names.mask_file(stem, k, name)
        write_atomic(path, _png_writer(image))
        paths.append(path)
    if overlay is not None:
        path = out / names.overlay_file(stem)
        write_atomic(path, _png_writer(overlay()))
        paths.append(path)
    path = out / names.summary_file(stem)
    write_json(path, summary)
    paths.append(path)
    return paths


PNG_COMPRESSION = 1
"""zlib level of every PNG clsclip writes: level 1 encodes a 12-megapixel overlay about 5x
faster than PIL's default 6, for a file about a quarter larger (benchmarks/bench_postprocess.py);
masks and label maps compress well at any level."""


def save_png(image: Image.Image, target: str | os.PathLike[str] | BinaryIO) -> None:
    """Write ``image`` as PNG at `PNG_COMPRESSION`."""
    image.save(target, format="PNG", compress_level=PNG_COMPRESSION)


def _png_writer(image: Image.Image) -> Callable[[Path], None]:
    def write(path: Path) -> None:
        save_png(image, path)

    return write

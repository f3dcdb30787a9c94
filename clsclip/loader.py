"""Decoding and letterboxing images in `DataLoader` workers while the model runs."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
from PIL import Image
from torch.utils.data import DataLoader, Dataset

from clsclip.image_io import ImageInput, load_image
from clsclip.preprocess import Letterbox, letterbox_image
from clsclip.results import SegmentationResult


@dataclass
class LoadedImage:
    """One decoded and letterboxed image, or why it could not be.

    Attributes:
        index: position in the input sequence.
        source: the file path, when the input was one.
        pixels: float32 ``3 x S x S`` normalised model input (None on error).
        letterbox: where the image sits in it (None on error).
        image: the RGB image, when kept (for drawing and ClsCLIP+ crops).
        error: ``"ErrorType: message"`` when decoding failed.
    """

    index: int
    source: str | None
    pixels: torch.Tensor | None = None
    letterbox: Letterbox | None = None
    image: Image.Image | None = None
    error: str | None = None


@dataclass
class ImageOutcome:
    """What `Segmenter.segment_many` yields for each input, in input order.

    Attributes:
        index: position in the input sequence.
        source: the file path, when the input was one.
        result: the segmentation, or None when the image failed.
        error: ``"ErrorType: message"`` for a failed image, else None.
    """

    index: int
    source: str | None
    result: SegmentationResult | None
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.error is None


class ImageListDataset(Dataset[LoadedImage]):
    """Images (paths, PIL images, arrays, or a map-style dataset of them) decoded and letterboxed
    on access; a bad image becomes a `LoadedImage` with ``error`` set, never an exception."""

    def __init__(
        self,
        items: Sequence[ImageInput] | Dataset[Any],
        *,
        input_size: int,
        mean: tuple[float, float, float],
        std: tuple[float, float, float],
        max_pixels: int | None,
        keep_images: bool,
        resize_mode: str = "letterbox",
    ) -> None:
        self.resize_mode = resize_mode
        self.items = items
        self.input_size = input_size
        self.mean, self.std = mean, std
        self.max_pixels = max_pixels
        self.keep_images = keep_images

    def __len__(self) -> int:
        return len(self.items)  # type: ignore[arg-type]

    def __getitem__(self, index: int) -> LoadedImage:
        source = None
        try:
            item = self.items[index]
            if isinstance(item, (str, os.PathLike)):
                source = os.fspath(item)
            image = load_image(item, max_pixels=self.max_pixels)
            pixels, box = letterbox_image(
                image, self.input_size, self.mean, self.std, self.resize_mode
            )
        except Exception as e:  # reported per image; one bad file must not stop a run
            return LoadedImage(index, source, error=f"{type(e).__name__}: {e}")
        return LoadedImage(index, source, pixels, box, image if self.keep_images else None)


def _keep_list(batch: list[LoadedImage]) -> list[LoadedImage]:
    return batch


def _lower_priority(worker_id: int) -> None:
    """Decoding yields the cores to the model: on a machine with few cores, workers at normal
    priority slowed a 2-core CPU run by 10-20 %."""
    with contextlib.suppress(OSError):  # not permitted here: run at normal priority
        os.nice(10)


def image_loader(dataset: ImageListDataset, *, batch_size: int, workers: int) -> DataLoader[Any]:
    """Batches (lists) of `LoadedImage` in input order; ``workers`` processes decode ahead
    (two batches each), so at most a few batches are in memory."""
    return DataLoader(
        dataset,
        batch_size=batch_size,
        shuffle=False,
        num_workers=workers,
        collate_fn=_keep_list,
        prefetch_factor=2 if workers else None,
        worker_init_fn=_lower_priority if workers else None,
    )
